-- account: what Meta said about the business account and its numbers, as a timeline: quality
-- and messaging limit changes, alerts, updates (restrictions, violations, bans, tier), new
-- capabilities and errors not of one message.
--
-- The account.* events of the days in [$from, $to], each once, in time order. What changed
-- comes from the event's attributes (ingest keeps Meta's change there: src/ingest/meta/):
-- `change` is Meta's `event` (FLAGGED, UPGRADE, ACCOUNT_VIOLATION, ...), else the alert's type,
-- else the error's code; `messaging_limit` the number's limit after a quality update, as a
-- count of conversations a day (TIER_250 is 250; unlimited is null); `detail` the alert's
-- description, the error's title, or the rest of the change.
WITH changes AS (
    SELECT DISTINCT event_id, occurred_at, phone_number_id, event_type, attributes, error_code, error_title
    FROM events
    WHERE event_type IN ('account.update', 'account.alert', 'account.phone_quality', 'account.capability',
                         'account.error')
      AND date >= $from AND date <= $to
)
SELECT occurred_at AS at,
       CAST(occurred_at AS DATE) AS day,
       phone_number_id,
       event_type AS kind,
       COALESCE(json_text(attributes, 'event'), json_text(attributes, 'alert_type'),
                CAST(error_code AS VARCHAR)) AS change,
       json_text(attributes, 'old_limit') AS previous_limit,
       json_text(attributes, 'current_limit') AS current_limit,
       CASE json_text(attributes, 'current_limit')
            WHEN 'TIER_50' THEN 50 WHEN 'TIER_250' THEN 250 WHEN 'TIER_1K' THEN 1000 WHEN 'TIER_2K' THEN 2000
            WHEN 'TIER_10K' THEN 10000 WHEN 'TIER_100K' THEN 100000 END AS messaging_limit,
       COALESCE(json_text(attributes, 'alert_description'), error_title, json_text(attributes, 'error_details'),
                json_text(attributes, 'violation_info'), json_text(attributes, 'restriction_info'),
                json_text(attributes, 'ban_info'), json_text(attributes, 'reason')) AS detail
FROM changes
ORDER BY occurred_at, event_id

-- templates: per template and language, where it stands with Meta (status, quality, category,
-- each with its history) and how its messages of the range did.
--
-- Messages: the cohort (as in funnel) per template and locale: sent, delivered, read, replied,
-- clicked (a button tapped or a link followed, as in buttons), converted (as in funnel: of the
-- messages whose attribution window has closed, with `window_open` the rest); their rates over
-- sent, the conversion rate over the messages whose window has closed; `failures`: the error codes of its failed messages, most frequent first, as
-- "code (messages)".
-- Standing: the template.status events up to $to (Meta's template updates, the change kept in
-- attributes by ingest: src/ingest/meta/), each once. `status`: the latest status update's
-- event, a pause with its kind (PAUSED:FIRST_PAUSE); `status_since` its time; `status_history`
-- every status update in order as "EVENT on DATE"; `paused_on`: the day of the latest pause;
-- `quality` and `quality_history` the same of quality updates; `category`: the latest new
-- category; `rejection_reason` and `rejection_recommendation`: of the latest rejection.
-- A template with updates but no message in the range is a row too (a rejected one, never
-- sent). The latest is taken by earliest_text over the negated time.
WITH {{cohort}},
-- Read three times (conversions, failures, per message): MATERIALIZED computes it once.
cohort_once AS MATERIALIZED (
    SELECT message_key, sent_at, contact, template, locale,
           CASE WHEN delivered_at IS NOT NULL OR read_at IS NOT NULL THEN 1 ELSE 0 END AS delivered,
           CASE WHEN read_at IS NOT NULL THEN 1 ELSE 0 END AS was_read,
           CASE WHEN replied THEN 1 ELSE 0 END AS replied,
           CASE WHEN date_part('epoch', sent_at) + $window_s <= date_part('epoch', now()) THEN 1 ELSE 0 END AS closed
    FROM cohort
),
{{conversions}},
{{clicks}},
failure_codes AS (
    SELECT DISTINCT id_key(message_id) AS message_key, error_code
    FROM events
    WHERE event_type = 'message.failed' AND error_code IS NOT NULL AND date >= $from
),
codes AS (
    SELECT s.template, s.locale, f.error_code, COUNT(*) AS n
    FROM failure_codes f
    JOIN cohort_once s ON s.message_key = f.message_key
    GROUP BY s.template, s.locale, f.error_code
),
failures AS (
    SELECT template, locale,
           string_agg(CAST(error_code AS VARCHAR) || ' (' || CAST(n AS VARCHAR) || ')', ', '
                      ORDER BY n DESC, error_code) AS failures
    FROM codes
    GROUP BY template, locale
),
messages AS (
    SELECT s.template, s.locale,
           COUNT(*) AS sent,
           SUM(s.delivered) AS delivered,
           SUM(s.was_read) AS was_read,
           SUM(s.replied) AS replied,
           SUM(CASE WHEN k.message_key IS NULL THEN 0 ELSE 1 END) AS clicked,
           SUM(CASE WHEN cv.message_key IS NULL THEN 0 ELSE s.closed END) AS converted,
           SUM(s.closed) AS window_closed
    FROM conversions cv
    RIGHT JOIN (clicks k RIGHT JOIN cohort_once s ON k.message_key = s.message_key) ON cv.message_key = s.message_key
    GROUP BY s.template, s.locale
),
updates AS (
    SELECT DISTINCT event_id, template, locale, occurred_at,
           -CAST(date_part('epoch', occurred_at) * 1000000 AS BIGINT) AS latest,
           CAST(CAST(occurred_at AS DATE) AS VARCHAR) AS day,
           json_text(attributes, 'field') AS field,
           json_text(attributes, 'event') AS event,
           json_text(attributes, 'pause') AS pause,
           json_text(attributes, 'new_quality_score') AS quality,
           json_text(attributes, 'new_category') AS new_category,
           json_text(attributes, 'rejection_reason') AS rejection_reason,
           json_text(attributes, 'rejection_recommendation') AS rejection_recommendation
    FROM events
    WHERE event_type = 'template.status' AND template IS NOT NULL AND date <= $to
),
statuses AS (
    SELECT *, CASE WHEN field = 'message_template_status_update' THEN event || COALESCE(':' || pause, '') END AS status
    FROM updates
),
standing AS (
    SELECT template, locale,
           earliest_text(status, latest) AS status,
           MAX(CASE WHEN status IS NOT NULL THEN occurred_at END) AS status_since,
           string_agg(status || ' on ' || day, '; ' ORDER BY occurred_at, event_id) AS status_history,
           MAX(CASE WHEN event = 'PAUSED' THEN CAST(occurred_at AS DATE) END) AS paused_on,
           earliest_text(quality, latest) AS quality,
           string_agg(quality || ' on ' || day, '; ' ORDER BY occurred_at, event_id) AS quality_history,
           earliest_text(new_category, latest) AS category,
           earliest_text(CASE WHEN event = 'REJECTED' THEN rejection_reason END, latest) AS rejection_reason,
           earliest_text(CASE WHEN event = 'REJECTED' THEN rejection_recommendation END, latest)
               AS rejection_recommendation
    FROM statuses
    GROUP BY template, locale
)
SELECT COALESCE(m.template, t.template) AS template,
       COALESCE(m.locale, t.locale) AS locale,
       t.status, t.status_since, t.status_history, t.paused_on, t.quality, t.quality_history, t.category,
       t.rejection_reason, t.rejection_recommendation,
       COALESCE(m.sent, 0) AS sent,
       COALESCE(m.delivered, 0) AS delivered,
       COALESCE(m.was_read, 0) AS "read",
       COALESCE(m.clicked, 0) AS clicked,
       COALESCE(m.replied, 0) AS replied,
       COALESCE(m.converted, 0) AS converted,
       COALESCE(m.sent - m.window_closed, 0) AS window_open,
       CAST(m.delivered AS DOUBLE) / m.sent AS delivery_rate,
       CAST(m.was_read AS DOUBLE) / m.sent AS read_rate,
       CAST(m.clicked AS DOUBLE) / m.sent AS click_rate,
       CAST(m.replied AS DOUBLE) / m.sent AS reply_rate,
       CASE WHEN m.window_closed > 0 THEN CAST(m.converted AS DOUBLE) / m.window_closed END AS conversion_rate,
       f.failures
FROM messages m
FULL JOIN standing t ON (t.template = m.template) AND (COALESCE(t.locale, '') = COALESCE(m.locale, ''))
LEFT JOIN failures f ON (f.template = m.template) AND (COALESCE(f.locale, '') = COALESCE(m.locale, ''))
WHERE COALESCE(m.template, t.template) IS NOT NULL
ORDER BY template, locale

-- Every consent change of one contact ($contact: its contact_key), oldest first: opt-ins and
-- opt-outs with where they came from, and Meta's error 131050 (the person stopped marketing
-- messages, said by a failed send).
SELECT
  CAST(occurred_at AS BIGINT) AS at,
  CASE
    WHEN event_type = 'consent.opt_in' THEN 'opt_in'
    ELSE 'opt_out'
  END AS change,
  CASE
    WHEN event_type = 'message.failed' THEN 'error_131050'
    WHEN source IN ('api', 'sender') THEN 'first_party'
    WHEN source = 'meta' AND event_id LIKE 'meta:pref:%' THEN 'meta_user_preferences'
    WHEN event_type = 'consent.opt_out' THEN 'stop_reply'
    ELSE source
  END AS source,
  CASE
    WHEN event_type = 'message.failed' THEN 'marketing'
    ELSE category
  END AS category
FROM events
WHERE contact_key = $contact
  AND (event_type IN ('consent.opt_in', 'consent.opt_out')
       OR (event_type = 'message.failed' AND error_code = 131050))
ORDER BY at, change

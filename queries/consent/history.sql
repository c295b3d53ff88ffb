-- Every consent change of one contact ($contact: its contact_key), oldest first: opt-ins and
-- opt-outs with where they came from (Meta's error 131050, the person stopped marketing
-- messages, is an opt-out of marketing recorded beside the failed send).
SELECT
  CAST(occurred_at AS BIGINT) AS at,
  CASE
    WHEN event_type = 'consent.opt_in' THEN 'opt_in'
    ELSE 'opt_out'
  END AS change,
  CASE
    WHEN event_id LIKE '%:131050:opt_out' THEN 'error_131050'
    WHEN source IN ('api', 'sender') THEN 'first_party'
    WHEN source = 'meta' AND event_id LIKE 'meta:pref:%' THEN 'meta_user_preferences'
    WHEN event_type = 'consent.opt_out' THEN 'stop_reply'
    ELSE source
  END AS source,
  category
FROM events
WHERE contact_key = $contact
  AND event_type IN ('consent.opt_in', 'consent.opt_out')
ORDER BY at, change

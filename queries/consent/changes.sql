-- Every consent change: who (contact_key), when (occurred_at), opt_in or opt_out, the category
-- it names (none: every category), and where it came from. Meta's error 131050 (the person
-- stopped marketing messages) is an opt-out of marketing recorded beside the failed send.
-- history.sql and current.sql read it as `changes`.
SELECT
  contact_key,
  occurred_at,
  CASE WHEN event_type = 'consent.opt_in' THEN 'opt_in' ELSE 'opt_out' END AS change,
  CASE
    WHEN event_id LIKE '%:131050:opt_out' THEN 'error_131050'
    WHEN source IN ('api', 'sender') THEN 'first_party'
    WHEN source = 'meta' AND event_id LIKE 'meta:pref:%' THEN 'meta_user_preferences'
    WHEN event_type = 'consent.opt_out' THEN 'stop_reply'
    ELSE source
  END AS source,
  category
FROM events
WHERE event_type IN ('consent.opt_in', 'consent.opt_out') AND contact_key IS NOT NULL

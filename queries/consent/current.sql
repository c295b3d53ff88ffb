-- The current consent of every contact, per category (`all` where the change named none): its
-- latest opt-in or opt-out, since when and from where, for an auditor.
SELECT contact_key, category, state, since, source
FROM (
  SELECT
    contact_key,
    COALESCE(category, 'all') AS category,
    CASE WHEN event_type = 'consent.opt_in' THEN 'opted_in' ELSE 'opted_out' END AS state,
    occurred_at AS since,
    CASE
      WHEN event_id LIKE '%:131050:opt_out' THEN 'error_131050'
      WHEN source IN ('api', 'sender') THEN 'first_party'
      WHEN source = 'meta' AND event_id LIKE 'meta:pref:%' THEN 'meta_user_preferences'
      WHEN event_type = 'consent.opt_out' THEN 'stop_reply'
      ELSE source
    END AS source,
    ROW_NUMBER() OVER (
      PARTITION BY contact_key, COALESCE(category, 'all')
      ORDER BY occurred_at DESC, event_type DESC
    ) AS latest
  FROM events
  WHERE event_type IN ('consent.opt_in', 'consent.opt_out') AND contact_key IS NOT NULL
)
WHERE latest = 1
ORDER BY contact_key, category

-- The current consent of every contact, per category (`all` where the change named none): its
-- latest opt-in or opt-out, since when and from where, for an auditor; from `changes`
-- (changes.sql).
SELECT contact_key, category, state, since, source
FROM (
  SELECT
    contact_key,
    COALESCE(category, 'all') AS category,
    CASE WHEN change = 'opt_in' THEN 'opted_in' ELSE 'opted_out' END AS state,
    occurred_at AS since,
    source,
    ROW_NUMBER() OVER (
      PARTITION BY contact_key, COALESCE(category, 'all')
      ORDER BY occurred_at DESC, change DESC
    ) AS latest
  FROM changes
)
WHERE latest = 1
ORDER BY contact_key, category

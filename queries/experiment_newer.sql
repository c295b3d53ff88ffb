-- experiment_newer: the kept experiment table (`kept_contacts`) with the rows of the contacts
-- that events files newer than it touch (`touched_contacts`, queries/experiment_touched.sql)
-- replaced by theirs computed again (`fresh_contacts`): what the report reads as
-- `experiment_contacts` then (src/analytics/reports/experiment/newer.rs).
SELECT * FROM kept_contacts k
WHERE NOT EXISTS (SELECT 1 FROM touched_contacts t WHERE t.contact = k.contact)
UNION ALL
SELECT * FROM fresh_contacts

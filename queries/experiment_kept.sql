-- experiment_kept: per_contact read from the table compaction keeps of
-- queries/experiment_contacts.sql (`experiment_contacts`: every exposed contact of every
-- experiment, every metric measured, locale and template kept), spliced into
-- queries/experiment.sql instead of computing it (src/analytics/reports/experiment/kept.rs).
-- Where events files newer than the table have landed, `experiment_contacts` is the table with
-- the rows of the contacts they touch computed again (queries/experiment_newer.sql).
--
-- The filters the table was built without are applied here; a run with a campaign filter
-- computes per_contact instead. Not materialized: `outcomes` (the contacts with revenue, which
-- the caps read) reads four of its columns, `capped` all of them, each straight from the table.
WITH per_contact AS (
    SELECT *
    FROM experiment_contacts
    WHERE ($experiment = '' OR experiment = $experiment)
      AND CAST(exposed_at AS DATE) >= CAST($from AS DATE)
      AND CAST(exposed_at AS DATE) <= CAST($to AS DATE)
),
outcomes AS (
    SELECT experiment, multi, revenue, pre_revenue
    FROM per_contact
    WHERE revenue > 0 OR pre_revenue > 0
)

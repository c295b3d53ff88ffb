-- DuckDB's formulation of the `counted` CTE of the plain-events form, events/failures.sql here
-- (scripts/bench_reports.py puts it in place of that form's own): the failures joined to the
-- cohort and aggregated, with the per-template count as a second aggregation of the cohort
-- joined back. DuckDB materialises a CTE named twice, so the second aggregation costs it
-- little; this was its faster form of the report before its window form (0.29 s against 0.42
-- for a window at 3 million events).
-- The benchmark times both and keeps DuckDB's faster.
counted AS (
    SELECT c.template, f.error_code, f.error_title, true AS is_failure,
           COUNT(DISTINCT f.message_key) AS failed, MAX(t.sent) AS sent
    FROM failed f
    JOIN cohort c ON c.message_key = f.message_key
    JOIN (SELECT template, COUNT(*) AS sent FROM cohort GROUP BY template) t
      ON t.template IS NOT DISTINCT FROM c.template
    GROUP BY c.template, f.error_code, f.error_title
)

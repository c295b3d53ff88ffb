-- DuckDB's formulation of the `counted` CTE of queries/failures.sql (scripts/bench_reports.py
-- puts it in place of the report's own): the per-template count as a second aggregation of the
-- cohort joined back, instead of a window. DuckDB materialises a CTE named twice, so the second
-- aggregation costs it little and this is its faster form (0.29 s against 0.42 for the window
-- at 3 million events); the benchmark times both and keeps DuckDB's faster.
counted AS (
    SELECT c.message_key, c.template, t.sent
    FROM cohort c
    JOIN (SELECT template, COUNT(*) AS sent FROM cohort GROUP BY template) t
      ON t.template IS NOT DISTINCT FROM c.template
)

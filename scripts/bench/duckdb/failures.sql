-- DuckDB's formulation of queries/failures.sql for scripts/bench_reports.py: the same rows,
-- with the per-template count as a second aggregation of the cohort. DuckDB materialises a CTE
-- named twice, so this is faster for DuckDB than the window the report uses (0.33 s against
-- 0.49 at 3 million events); the benchmark times both and keeps DuckDB's faster.
-- failures: why messages fail, per error code, title and template.
--
-- failed: distinct messages of the cohort with a message.failed status of that code.
-- share_of_sent: failed / messages of that template sent in the cohort.
WITH {{cohort}},
sent_per_template AS (
    SELECT template, COUNT(*) AS sent FROM cohort GROUP BY template
),
failed AS (
    SELECT DISTINCT message_id, error_code, error_title
    FROM events
    WHERE event_type = 'message.failed' AND date >= $from
)
SELECT f.error_code,
       f.error_title,
       c.template,
       COUNT(DISTINCT f.message_id) AS failed,
       CAST(COUNT(DISTINCT f.message_id) AS DOUBLE) / MAX(t.sent) AS share_of_sent
FROM failed f
JOIN cohort c ON c.message_id = f.message_id
JOIN sent_per_template t ON t.template IS NOT DISTINCT FROM c.template
GROUP BY f.error_code, f.error_title, c.template
ORDER BY failed DESC, f.error_code, c.template

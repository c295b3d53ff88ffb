-- failures as one query over the events, the form the report had before it read the facts
-- tables: DuckDB's formulation over plain events (scripts/bench_reports.py), the query a
-- team without convoscope would run. Its pieces in double braces: cohort, the cohort over the
-- events (cohort.sql here); report_cte:X, the CTE X of the report's own SQL (queries/failures.sql)
-- where the two forms agree; report_from:X, the rest of the report from its CTE X (SELECT:
-- its final SELECT).
WITH {{cohort}},
failed AS (
    SELECT DISTINCT id_key(message_id) AS message_key, error_code, error_title
    FROM events
    WHERE event_type = 'message.failed' AND date >= $from
),
-- The join below gives every cohort message one row, or one per distinct failure (failed_once
-- numbers a message's failures). per_group counts failures per code, title and template
-- (distinct messages, as `failed` is distinct), and messages per template in parts (rows
-- numbered 1 or with no failure), which a window over these few dozen groups sums. The count
-- was a window over the whole cohort, sorting 2.4 million messages by template; this form
-- takes 20% less time at 10 million events (paired runs).
failed_once AS (
    SELECT message_key, error_code, error_title,
           ROW_NUMBER() OVER (PARTITION BY message_key ORDER BY error_code, error_title) AS nth
    FROM failed
),
per_group AS (
    SELECT c.template, f.error_code, f.error_title, f.message_key IS NOT NULL AS is_failure,
           COUNT(f.message_key) AS failed,
           SUM(CASE WHEN f.nth IS NULL OR f.nth = 1 THEN 1 ELSE 0 END) AS sent_part
    FROM failed_once f
    RIGHT JOIN cohort c ON f.message_key = c.message_key
    GROUP BY c.template, f.error_code, f.error_title, f.message_key IS NOT NULL
),
{{report_from:counted}}

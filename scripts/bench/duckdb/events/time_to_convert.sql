-- time_to_convert as one query over the events: DuckDB's formulation over plain events
-- (scripts/bench_reports.py). Its pieces in double braces: cohort, the cohort over the events
-- (cohort.sql here); report_from:X, the rest of the report (queries/time_to_convert.sql) from
-- its CTE X.
WITH {{cohort}},
reads AS (
    SELECT id_key(message_id) AS message_key, MIN(occurred_at) AS read_at
    FROM events
    WHERE event_type = 'message.read' AND message_id IS NOT NULL AND date >= $from
    GROUP BY id_key(message_id)
),
cohort_once AS MATERIALIZED (
    SELECT c.message_key, c.sent_at, c.contact, c.campaign, r.read_at
    FROM cohort c
    LEFT JOIN reads r ON r.message_key = c.message_key
),
{{report_from:replies}}

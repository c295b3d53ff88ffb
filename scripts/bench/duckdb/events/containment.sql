-- containment as one query over the events, the form the report had before it read the facts
-- tables: DuckDB's formulation over plain events (scripts/bench_reports.py), the query a
-- team without convoscope would run. Its pieces in double braces: cohort, the cohort over the
-- events (cohort.sql here); report_cte:X, the CTE X of the report's own SQL (queries/containment.sql)
-- where the two forms agree; report_from:X, the rest of the report from its CTE X (SELECT:
-- its final SELECT).
WITH conv AS (
    SELECT MIN(CASE WHEN event_type = 'conversation.opened' THEN occurred_at END) AS opened_at,
           min_text(CASE WHEN event_type = 'conversation.opened' THEN date END) AS day,
           max_text(queue) AS queue,
           MAX(CASE WHEN event_type = 'conversation.resolved' THEN 1 ELSE 0 END) AS resolved,
           MAX(CASE WHEN event_type = 'conversation.handoff' THEN 1 ELSE 0 END) AS handed_off
    FROM events
    WHERE event_type LIKE 'conversation.%' AND conversation_id IS NOT NULL AND date >= $from
    GROUP BY id_key(conversation_id)
)
{{report_from:SELECT}}

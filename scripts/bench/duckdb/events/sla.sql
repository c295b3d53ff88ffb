-- sla as one query over the events, the form the report had before it read the facts
-- tables: DuckDB's formulation over plain events (scripts/bench_reports.py), the query a
-- team without convoscope would run. Its pieces in double braces: cohort, the cohort over the
-- events (cohort.sql here); report_cte:X, the CTE X of the report's own SQL (queries/sla.sql)
-- where the two forms agree; report_from:X, the rest of the report from its CTE X (SELECT:
-- its final SELECT).
WITH ev AS (
    SELECT id_key(conversation_id) AS conv_key, event_type, occurred_at, date, queue, actor
    FROM events
    WHERE conversation_id IS NOT NULL AND date >= $from
),
conv AS (
    SELECT conv_key,
           MIN(CASE WHEN event_type = 'conversation.opened' THEN occurred_at END) AS opened_at,
           min_text(CASE WHEN event_type = 'conversation.opened' THEN date END) AS day,
           max_text(queue) AS queue,
           MIN(CASE WHEN actor = 'customer' OR event_type = 'message.inbound' THEN occurred_at END) AS first_customer_at,
           MIN(CASE WHEN event_type = 'conversation.resolved' THEN occurred_at END) AS resolved_at
    FROM ev
    GROUP BY conv_key
),
-- Each conversation's replies (reopen false) and reopenings (true).
touches AS (
    SELECT conv_key, occurred_at AS at, event_type = 'conversation.reopened' AS reopen
    FROM ev
    WHERE event_type IN ('conversation.bot_reply', 'conversation.agent_reply', 'conversation.reopened')
),
{{report_cte:start}},
{{report_cte:joined}},
per_conv AS (SELECT * FROM joined)
{{report_from:SELECT}}

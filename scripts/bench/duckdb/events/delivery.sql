-- delivery as one query over the events, the form the report had before it read the facts
-- tables: DuckDB's formulation over plain events (scripts/bench_reports.py), the query a
-- team without convoscope would run. Its pieces in double braces: cohort, the cohort over the
-- events (cohort.sql here); report_cte:X, the CTE X of the report's own SQL (queries/delivery.sql)
-- where the two forms agree; report_from:X, the rest of the report from its CTE X (SELECT:
-- its final SELECT). Without a breakdown every level is '', as the report's.
WITH {{cohort}},
status AS (
    SELECT id_key(message_id) AS message_key,
           MIN(CASE WHEN event_type = 'message.delivered' THEN occurred_at END) AS delivered_at,
           MIN(CASE WHEN event_type = 'message.read' THEN occurred_at END) AS read_at,
           MAX(CASE WHEN event_type = 'message.failed' THEN 1 ELSE 0 END) AS failed
    FROM events
    WHERE event_type IN ('message.delivered', 'message.read', 'message.failed') AND date >= $from
    GROUP BY id_key(message_id)
),
per_message AS (
    SELECT s.day, s.template, s.locale, '' AS level,
           CASE WHEN st.delivered_at IS NOT NULL OR st.read_at IS NOT NULL THEN 1 ELSE 0 END AS delivered,
           CASE WHEN st.read_at IS NOT NULL THEN 1 ELSE 0 END AS was_read,
           COALESCE(st.failed, 0) AS failed,
           date_part('epoch', st.delivered_at) - date_part('epoch', s.sent_at) AS delivery_s,
           date_part('epoch', st.read_at) - date_part('epoch', st.delivered_at) AS read_s
    -- status RIGHT JOIN cohort: DataFusion builds its hash table from the left input.
    FROM status st
    RIGHT JOIN cohort s ON st.message_key = s.message_key
),
{{report_from:top_levels}}

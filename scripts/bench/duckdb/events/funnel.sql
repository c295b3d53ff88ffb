-- funnel as one query over the events, the form the report had before it read the facts
-- tables: DuckDB's formulation over plain events (scripts/bench_reports.py), the query a
-- team without convoscope would run. Its pieces in double braces: cohort, the cohort over the
-- events (cohort.sql here); report_cte:X, the CTE X of the report's own SQL (queries/funnel.sql)
-- where the two forms agree; report_from:X, the rest of the report from its CTE X (SELECT:
-- its final SELECT).
WITH {{cohort}},
-- The cohort is read twice, by the per-message join and by conversions. Without the hint
-- DataFusion would aggregate the sends twice; MATERIALIZED computes them once
-- (src/analytics/materialize.rs; 10 million events, paired runs: 15-20% less time).
cohort_once AS MATERIALIZED (
    SELECT message_key, sent_at, contact, campaign, template FROM cohort
),
status AS (
    SELECT id_key(message_id) AS message_key,
           MAX(CASE WHEN event_type IN ('message.delivered', 'message.read') THEN 1 ELSE 0 END) AS delivered,
           MAX(CASE WHEN event_type = 'message.read' THEN 1 ELSE 0 END) AS was_read
    FROM events
    WHERE event_type IN ('message.delivered', 'message.read') AND date >= $from
    GROUP BY id_key(message_id)
),
replies AS (
    SELECT DISTINCT id_key(reply_to) AS message_key
    FROM events
    WHERE event_type IN ('interaction.reply', 'message.inbound') AND reply_to IS NOT NULL AND date >= $from
),
{{report_cte:conversions}},
-- Each LEFT JOIN is written as RIGHT JOIN with the cohort last: DataFusion builds its hash
-- table from the left input, and the cohort is the largest side (20-25% faster at 3 million
-- events than building from the cohort and emitting its unmatched rows at the end).
per_message AS (
    SELECT s.campaign, s.template, '' AS breakdown,
           COALESCE(st.delivered, 0) AS delivered,
           COALESCE(st.was_read, 0) AS was_read,
           CASE WHEN r.message_key IS NULL THEN 0 ELSE 1 END AS replied,
           CASE WHEN cv.message_key IS NULL THEN 0 ELSE 1 END AS converted,
           CASE WHEN date_part('epoch', s.sent_at) + $window_s <= date_part('epoch', now()) THEN 1 ELSE 0 END
               AS closed
    FROM conversions cv
    RIGHT JOIN (replies r
        RIGHT JOIN (status st
            RIGHT JOIN cohort_once s ON st.message_key = s.message_key)
        ON r.message_key = s.message_key)
    ON cv.message_key = s.message_key
)
{{report_from:SELECT}}

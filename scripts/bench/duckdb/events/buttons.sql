-- buttons as one query over the events: DuckDB's formulation over plain events
-- (scripts/bench_reports.py). Its pieces in double braces: cohort, the cohort over the events
-- (cohort.sql here); report_from:X, the rest of the report (queries/buttons.sql) from its CTE X.
WITH {{cohort}},
receipts AS (
    SELECT id_key(message_id) AS message_key,
           MAX(CASE WHEN event_type IN ('message.delivered', 'message.read') THEN 1 ELSE 0 END) AS delivered,
           MAX(CASE WHEN event_type = 'message.read' THEN 1 ELSE 0 END) AS was_read
    FROM events
    WHERE event_type IN ('message.delivered', 'message.read') AND message_id IS NOT NULL AND date >= $from
    GROUP BY id_key(message_id)
),
variants AS (
    SELECT id_key(message_id) AS message_key, max_text(variant) AS variant
    FROM events
    WHERE event_type IN ('send.accepted', 'message.sent') AND message_id IS NOT NULL AND experiment IS NOT NULL
      AND variant IS NOT NULL AND contact_key IS NOT NULL
    GROUP BY id_key(message_id)
),
messages AS MATERIALIZED (
    SELECT s.message_key, s.template, v.variant, COALESCE(r.delivered, 0) AS delivered,
           COALESCE(r.was_read, 0) AS was_read
    FROM cohort s
    LEFT JOIN receipts r ON r.message_key = s.message_key
    LEFT JOIN variants v ON v.message_key = s.message_key
),
{{report_from:totals}}

-- templates as one query over the events: DuckDB's formulation over plain events
-- (scripts/bench_reports.py). Its pieces in double braces: cohort, the cohort over the events
-- (cohort.sql here); report_from:X, the rest of the report (queries/templates.sql) from its
-- CTE X.
WITH {{cohort}},
receipts AS (
    SELECT id_key(CASE WHEN event_type IN ('interaction.reply', 'message.inbound') THEN reply_to ELSE message_id END)
               AS message_key,
           MAX(CASE WHEN event_type IN ('message.delivered', 'message.read') THEN 1 ELSE 0 END) AS delivered,
           MAX(CASE WHEN event_type = 'message.read' THEN 1 ELSE 0 END) AS was_read,
           MAX(CASE WHEN event_type IN ('interaction.reply', 'message.inbound') THEN 1 ELSE 0 END) AS replied
    FROM events
    WHERE event_type IN ('message.delivered', 'message.read', 'interaction.reply', 'message.inbound')
      AND date >= $from
    GROUP BY 1
),
cohort_once AS MATERIALIZED (
    SELECT c.message_key, c.sent_at, c.contact, c.template, c.locale, COALESCE(r.delivered, 0) AS delivered,
           COALESCE(r.was_read, 0) AS was_read, COALESCE(r.replied, 0) AS replied,
           CASE WHEN date_part('epoch', c.sent_at) + $window_s <= date_part('epoch', now()) THEN 1 ELSE 0 END AS closed
    FROM cohort c
    LEFT JOIN receipts r ON r.message_key = c.message_key
),
{{report_from:conversions}}

-- trends as one query over the events: DuckDB's formulation over plain events
-- (scripts/bench_reports.py), the query a team without convoscope would run. Its pieces in
-- double braces: report_cte:X, the CTE X of the report's own SQL (queries/trends.sql) where
-- the two forms agree; report_from:X, the rest of the report from its CTE X.
WITH message_events AS (
    SELECT id_key(CASE WHEN event_type IN ('interaction.reply', 'message.inbound') THEN reply_to ELSE message_id END)
               AS message_key,
           event_type, occurred_at, date, campaign, contact_key, billable, category, country, cost_micros,
           event_type IN ('send.accepted', 'message.sent') AND date <= $to AS cohort_send,
           event_type IN ('send.accepted', 'message.sent', 'message.delivered', 'message.read') AS billed
    FROM events
    WHERE date >= $from
      AND event_type IN ('send.accepted', 'message.sent', 'message.delivered', 'message.read', 'message.failed',
                         'interaction.reply', 'message.inbound')
),
msg AS (
    SELECT message_key,
           MIN(CASE WHEN cohort_send THEN occurred_at END) AS sent_at,
           min_text(CASE WHEN cohort_send THEN date END) AS day,
           max_text(CASE WHEN cohort_send THEN campaign END) AS campaign,
           MAX(CASE WHEN cohort_send THEN id_key(contact_key) END) AS contact,
           MAX(CASE WHEN event_type IN ('message.delivered', 'message.read') THEN 1 ELSE 0 END) AS delivered,
           MAX(CASE WHEN event_type = 'message.read' THEN 1 ELSE 0 END) AS was_read,
           MAX(CASE WHEN event_type IN ('interaction.reply', 'message.inbound') THEN 1 ELSE 0 END) AS replied,
           MAX(CASE WHEN event_type = 'message.failed' THEN 1 ELSE 0 END) AS failed,
           bool_or(billed AND COALESCE(billable, false)) AS billable,
           max_text(CASE WHEN billed THEN category END) AS category,
           max_text(CASE WHEN billed THEN country END) AS country,
           MAX(CASE WHEN billed THEN cost_micros END) AS cost_micros
    FROM message_events
    WHERE message_key IS NOT NULL
    GROUP BY message_key
),
cohort_once AS MATERIALIZED (
    SELECT m.message_key, m.sent_at, m.contact, CAST(m.day AS DATE) AS day, m.delivered, m.was_read, m.replied,
           m.failed,
           COALESCE(CAST(m.cost_micros AS DOUBLE) / 1000000,
                    CASE WHEN m.billable THEN COALESCE(r.price, d.price, 0) ELSE 0 END) AS cost
    FROM msg m
    LEFT JOIN rate_card r ON r.category = m.category AND r.country = m.country
    LEFT JOIN rate_card d ON d.category = m.category AND d.country = '*'
    WHERE m.sent_at IS NOT NULL AND ($campaign = '' OR m.campaign = $campaign)
),
{{report_cte:conversions}},
{{report_from:per_message}}

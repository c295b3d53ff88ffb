-- cost as one query over the events, the form the report had before it read the facts
-- tables: DuckDB's formulation over plain events (scripts/bench_reports.py), the query a
-- team without convoscope would run. Its pieces in double braces: cohort, the cohort over the
-- events (cohort.sql here); report_cte:X, the CTE X of the report's own SQL (queries/cost.sql)
-- where the two forms agree; report_from:X, the rest of the report from its CTE X (SELECT:
-- its final SELECT).
WITH message_events AS (
    SELECT message_id, occurred_at, campaign, contact_key, billable, category, country, cost_micros,
           event_type IN ('send.accepted', 'message.sent') AND date <= $to AS cohort_send
    FROM events
    WHERE message_id IS NOT NULL AND date >= $from
      AND event_type IN ('send.accepted', 'message.sent', 'message.delivered', 'message.read')
),
msg AS (
    SELECT id_key(message_id) AS message_key,
           MIN(CASE WHEN cohort_send THEN occurred_at END) AS sent_at,
           max_text(CASE WHEN cohort_send THEN campaign END) AS campaign,
           MAX(CASE WHEN cohort_send THEN id_key(contact_key) END) AS contact,
           MAX(CASE WHEN billable THEN 1 ELSE 0 END) AS billable,
           max_text(category) AS category,
           max_text(country) AS country,
           MAX(cost_micros) AS cost_micros
    FROM message_events
    GROUP BY id_key(message_id)
),
-- Read twice (the message totals and the attribution join): MATERIALIZED computes the
-- messages' aggregation once.
priced AS MATERIALIZED (
    SELECT m.message_key, m.campaign, m.contact, m.sent_at, m.category,
           COALESCE(CAST(m.cost_micros AS DOUBLE) / 1000000,
                    CASE WHEN m.billable = 1 THEN COALESCE(r.price, d.price, 0) ELSE 0 END) AS cost,
           CASE WHEN m.cost_micros IS NULL AND m.billable = 1 AND r.price IS NULL AND d.price IS NULL THEN 1 ELSE 0 END
               AS unpriced,
           CASE WHEN date_part('epoch', m.sent_at) + $window_s <= date_part('epoch', now()) THEN 0 ELSE 1 END
               AS window_open
    FROM msg m
    LEFT JOIN rate_card r ON r.category = m.category AND r.country = m.country
    LEFT JOIN rate_card d ON d.category = m.category AND d.country = '*'
    WHERE m.sent_at IS NOT NULL AND ($campaign = '' OR m.campaign = $campaign)
),
per_conversation AS (
    SELECT id_key(conversation_id) AS id,
           MAX(id_key(contact_key)) AS contact,
           MIN(CASE WHEN event_type = 'conversation.opened' THEN occurred_at END) AS opened_at,
           MIN(CASE WHEN event_type = 'conversation.handoff' THEN occurred_at END) AS handoff_at,
           MIN(CASE WHEN event_type = 'conversation.resolved' THEN occurred_at END) AS resolved_at,
           MAX(CASE WHEN event_type = 'conversation.bot_reply' THEN 1 ELSE 0 END) AS bot
    FROM events
    WHERE conversation_id IS NOT NULL AND date >= $from
    GROUP BY id_key(conversation_id)
),
{{report_from:conversion_events}}

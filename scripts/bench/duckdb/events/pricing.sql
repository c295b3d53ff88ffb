-- pricing as one query over the events: DuckDB's formulation over plain events
-- (scripts/bench_reports.py), each message's send, receipts, billing and pricing type in one
-- pass. Its pieces in double braces: report_from:X, the rest of the report
-- (queries/pricing.sql) from its CTE X.
WITH message_events AS (
    SELECT message_id, occurred_at, date, campaign, contact_key, billable, category, country, cost_micros,
           event_type, attributes,
           event_type IN ('send.accepted', 'message.sent') AND date <= $to AS cohort_send
    FROM events
    WHERE message_id IS NOT NULL AND date >= $from
      AND event_type IN ('send.accepted', 'message.sent', 'message.delivered', 'message.read')
),
msg AS (
    SELECT id_key(message_id) AS message_key,
           MIN(CASE WHEN cohort_send THEN occurred_at END) AS sent_at,
           min_text(CASE WHEN cohort_send THEN date END) AS day,
           max_text(CASE WHEN cohort_send THEN campaign END) AS campaign,
           MAX(CASE WHEN cohort_send THEN id_key(contact_key) END) AS contact,
           MAX(CASE WHEN event_type IN ('message.delivered', 'message.read') THEN 1 ELSE 0 END) AS delivered,
           MAX(CASE WHEN event_type = 'message.read' THEN 1 ELSE 0 END) AS was_read,
           bool_or(COALESCE(billable, false)) AS billable,
           max_text(category) AS category,
           max_text(country) AS country,
           MAX(cost_micros) AS cost_micros,
           max_text(CASE WHEN event_type <> 'send.accepted' THEN json_text(attributes, 'pricing_type') END)
               AS pricing_type
    FROM message_events
    GROUP BY id_key(message_id)
),
cohort_once AS MATERIALIZED (
    SELECT m.message_key, m.sent_at, m.contact, m.day, m.category, m.country, m.pricing_type, m.delivered,
           m.was_read,
           CASE WHEN m.billable THEN 1 ELSE 0 END AS billable,
           COALESCE(CAST(m.cost_micros AS DOUBLE) / 1000000,
                    CASE WHEN m.billable THEN COALESCE(r.price, d.price, 0) ELSE 0 END) AS cost,
           CASE WHEN m.cost_micros IS NULL AND m.billable AND r.price IS NULL AND d.price IS NULL THEN 1 ELSE 0 END
               AS unpriced,
           CASE WHEN date_part('epoch', m.sent_at) + $window_s <= date_part('epoch', now()) THEN 1 ELSE 0 END
               AS closed
    FROM msg m
    LEFT JOIN rate_card r ON r.category = m.category AND r.country = m.country
    LEFT JOIN rate_card d ON d.category = m.category AND d.country = '*'
    WHERE m.sent_at IS NOT NULL AND ($campaign = '' OR m.campaign = $campaign)
),
{{report_from:conversions}}

-- cost, from the rollups: the same report as ../cost.sql, whose header says what each column
-- means. The messages' cohort and billing come from the message rollup (one row per message),
-- the conversations from the conversation rollup (one row per conversation and file, merged
-- here); conversions are still read from their events.
WITH {{cohort}},
-- Read twice (the message totals and the attribution join): MATERIALIZED computes the
-- messages' aggregation once.
priced AS MATERIALIZED (
    SELECT m.message_key, m.campaign, m.contact, m.sent_at, m.category,
           COALESCE(CAST(m.cost_micros AS DOUBLE) / 1000000,
                    CASE WHEN m.billable THEN COALESCE(r.price, d.price, 0) ELSE 0 END) AS cost
    FROM cohort m
    LEFT JOIN rate_card r ON r.category = m.category AND r.country = m.country
    LEFT JOIN rate_card d ON d.category = m.category AND d.country = '*'
),
per_conversation AS (
    SELECT conversation_key AS id,
           MAX(contact_key) AS contact,
           MIN(opened_at) AS opened_at,
           MIN(handoff_at) AS handoff_at,
           MIN(resolved_at) AS resolved_at,
           MAX(CASE WHEN bot_replied THEN 1 ELSE 0 END) AS bot
    FROM conversations
    WHERE date >= $from
    GROUP BY conversation_key
),
{{cost_totals}}

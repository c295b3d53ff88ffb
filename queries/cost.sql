-- cost: what messages and support cost, against what they brought, per campaign and category.
--
-- Messaging cost per message of the cohort, and `unpriced`: as queries/priced.sql says.
-- Conversions and revenue: as in funnel (a conversion within $window_s seconds after a send to
-- the contact); each conversion event's revenue counts once per row.
-- Resolutions: conversations opened within the window after a send of the row to the contact
-- and resolved. Their support cost: $bot_cost for a conversation the bot answered, plus
-- $agent_cost_per_hour for the time from handoff to resolution.
-- cost = messaging + support cost; cost_per_resolution and cost_per_conversion divide it and
-- are null when the denominator is 0. window_open counts the messages whose attribution window
-- had not closed when the report ran: while it is above 0, conversions, revenue and
-- resolutions may still grow and the per-conversion and per-resolution costs change.
WITH {{cohort}},
{{priced}},
-- Read twice (the message totals and the attribution join): MATERIALIZED computes the
-- messages' aggregation once.
priced AS MATERIALIZED (
    SELECT message_key, campaign, contact, sent_at, category, cost, unpriced,
           CASE WHEN date_part('epoch', sent_at) + $window_s <= date_part('epoch', now()) THEN 0 ELSE 1 END
               AS window_open
    FROM priced_cohort
),
per_conversation AS (
    SELECT conversation_key AS id,
           MAX(contact_key) AS contact,
           MIN(opened_at) AS opened_at,
           MIN(handoff_at) AS handoff_at,
           MIN(resolved_at) AS resolved_at,
           MAX(CASE WHEN bot_replied THEN 1 ELSE 0 END) AS bot
    FROM conversation_facts
    WHERE date >= $from
    GROUP BY conversation_key
),
conversion_events AS (
    SELECT event_key AS id, MAX(contact) AS contact, MIN(occurred_at) AS occurred_at,
           CAST(MAX(revenue_micros) AS DOUBLE) / 1000000 AS revenue
    FROM contact_event_facts
    WHERE event_type = 'conversion' AND date >= $from
    GROUP BY event_key
),
resolved AS (
    SELECT id, contact, opened_at,
           bot * $bot_cost
             + CASE WHEN handoff_at IS NULL THEN 0
                    ELSE (date_part('epoch', resolved_at) - date_part('epoch', handoff_at)) / 3600 * $agent_cost_per_hour
               END AS support_cost
    FROM per_conversation
    WHERE resolved_at IS NOT NULL AND opened_at IS NOT NULL AND contact IS NOT NULL
),
outcomes AS (
    SELECT 'conversion' AS kind, id, contact, occurred_at AS at, revenue AS value
    FROM conversion_events
    UNION ALL
    SELECT 'resolution' AS kind, id, contact, opened_at AS at, support_cost AS value
    FROM resolved
),
-- Conversions and resolutions attributed to messages: only the pairs that match (outcomes
-- first: DataFusion builds its hash table from the left input, and they are the smaller side).
matched AS (
    SELECT p.campaign, p.category, p.message_key, o.kind, o.id, o.value
    FROM outcomes o
    JOIN priced p ON o.contact = p.contact
        AND o.at >= p.sent_at
        AND date_part('epoch', o.at) <= date_part('epoch', p.sent_at) + $window_s
),
-- Each conversion or resolution counts once per row, however many of the row's messages it
-- follows.
outcome_values AS (
    SELECT campaign, category, kind, id, MAX(value) AS value
    FROM matched
    GROUP BY campaign, category, kind, id
),
-- Every total is a sum over one of three parts: the messages, the converted messages, the
-- distinct outcomes. Unioned and summed rather than joined, so a null campaign or category is
-- one row like any other. The messages are not grouped by message (each is one row of
-- priced): the form before this, one GROUPING SETS aggregation of every message joined with
-- its outcomes, spent most of its time on that 2.4-million-group table (10 million events:
-- 21-29% less time, paired runs; DuckDB's 16% less).
parts AS (
    SELECT campaign, category, 1 AS messages, unpriced, cost AS messaging_cost, 0 AS conversions,
           0.0 AS revenue, 0 AS resolutions, 0.0 AS support_cost, window_open
    FROM priced
    UNION ALL
    SELECT campaign, category, 0, 0, 0.0, 1, 0.0, 0, 0.0, 0
    FROM (SELECT DISTINCT campaign, category, message_key FROM matched WHERE kind = 'conversion') converted
    UNION ALL
    SELECT campaign, category, 0, 0, 0.0, 0,
           CASE WHEN kind = 'conversion' THEN value ELSE 0 END,
           CASE WHEN kind = 'resolution' THEN 1 ELSE 0 END,
           CASE WHEN kind = 'resolution' THEN value ELSE 0 END,
           0
    FROM outcome_values
),
totals0 AS (
    SELECT campaign, category,
           SUM(messages) AS messages,
           SUM(unpriced) AS unpriced,
           SUM(messaging_cost) AS messaging_cost,
           SUM(conversions) AS conversions,
           SUM(revenue) AS revenue,
           SUM(resolutions) AS resolutions,
           SUM(support_cost) AS support_cost,
           SUM(window_open) AS window_open
    FROM parts
    GROUP BY campaign, category
),
totals AS (
    SELECT campaign, category, messages, unpriced, messaging_cost, support_cost,
           messaging_cost + support_cost AS cost,
           resolutions, conversions, revenue, window_open
    FROM totals0
)
SELECT campaign, category, messages, unpriced, messaging_cost, support_cost, cost, resolutions, conversions,
       revenue, window_open,
       CASE WHEN resolutions = 0 THEN NULL ELSE cost / resolutions END AS cost_per_resolution,
       CASE WHEN conversions = 0 THEN NULL ELSE cost / conversions END AS cost_per_conversion
FROM totals
ORDER BY campaign, category


-- cost: what messages and support cost, against what they brought, per campaign and category.
--
-- Messaging cost per message of the cohort: its own cost_micros when the provider or sender
-- recorded one, else, when any status says it is billable, the rate card's price for its
-- category and the contact's country (the '*' row when the country is not listed).
-- Conversions and revenue: as in funnel (a conversion within $window_s seconds after a send to
-- the contact); each conversion event's revenue counts once per row.
-- Resolutions: conversations opened within the window after a send of the row to the contact
-- and resolved. Their support cost: $bot_cost for a conversation the bot answered, plus
-- $agent_cost_per_hour for the time from handoff to resolution.
-- cost = messaging + support cost; cost_per_resolution and cost_per_conversion divide it and
-- are null when the denominator is 0.
WITH {{cohort}},
msg AS (
    SELECT message_id,
           MAX(CASE WHEN billable THEN 1 ELSE 0 END) AS billable,
           MAX(category) AS category,
           MAX(country) AS country,
           MAX(cost_micros) AS cost_micros
    FROM events
    WHERE message_id IS NOT NULL AND date >= $from
      AND event_type IN ('send.accepted', 'message.sent', 'message.delivered', 'message.read')
    GROUP BY message_id
),
priced AS (
    SELECT c.message_id, c.campaign, c.contact_key, c.sent_at, m.category,
           COALESCE(CAST(m.cost_micros AS DOUBLE) / 1000000,
                    CASE WHEN m.billable = 1 THEN COALESCE(r.price, d.price, 0) ELSE 0 END) AS cost
    FROM cohort c
    JOIN msg m ON m.message_id = c.message_id
    LEFT JOIN rate_card r ON r.category = m.category AND r.country = m.country
    LEFT JOIN rate_card d ON d.category = m.category AND d.country = '*'
),
conversion_events AS (
    SELECT event_id, MAX(contact_key) AS contact_key, MIN(occurred_at) AS occurred_at,
           MAX(CAST(COALESCE(revenue_micros, 0) AS DOUBLE) / 1000000) AS revenue
    FROM events
    WHERE event_type = 'conversion' AND contact_key IS NOT NULL AND date >= $from
    GROUP BY event_id
),
attributed AS (
    SELECT DISTINCT p.campaign, p.category, p.message_id, cv.event_id, cv.revenue
    FROM priced p
    JOIN conversion_events cv ON cv.contact_key = p.contact_key
    WHERE cv.occurred_at >= p.sent_at
      AND date_part('epoch', cv.occurred_at) <= date_part('epoch', p.sent_at) + $window_s
),
conversations AS (
    SELECT conversation_id,
           MAX(contact_key) AS contact_key,
           MIN(CASE WHEN event_type = 'conversation.opened' THEN occurred_at END) AS opened_at,
           MIN(CASE WHEN event_type = 'conversation.handoff' THEN occurred_at END) AS handoff_at,
           MIN(CASE WHEN event_type = 'conversation.resolved' THEN occurred_at END) AS resolved_at,
           MAX(CASE WHEN event_type = 'conversation.bot_reply' THEN 1 ELSE 0 END) AS bot
    FROM events
    WHERE conversation_id IS NOT NULL AND date >= $from
    GROUP BY conversation_id
),
resolved AS (
    SELECT conversation_id, contact_key, opened_at,
           bot * $bot_cost
             + CASE WHEN handoff_at IS NULL THEN 0
                    ELSE (date_part('epoch', resolved_at) - date_part('epoch', handoff_at)) / 3600 * $agent_cost_per_hour
               END AS support_cost
    FROM conversations
    WHERE resolved_at IS NOT NULL AND opened_at IS NOT NULL AND contact_key IS NOT NULL
),
resolutions AS (
    SELECT DISTINCT p.campaign, p.category, r.conversation_id, r.support_cost
    FROM priced p
    JOIN resolved r ON r.contact_key = p.contact_key
    WHERE r.opened_at >= p.sent_at
      AND date_part('epoch', r.opened_at) <= date_part('epoch', p.sent_at) + $window_s
),
by_messages AS (
    SELECT campaign, category, COUNT(*) AS messages, SUM(cost) AS messaging_cost
    FROM priced GROUP BY campaign, category
),
by_conversions AS (
    SELECT campaign, category, COUNT(DISTINCT message_id) AS conversions FROM attributed GROUP BY campaign, category
),
by_revenue AS (
    SELECT campaign, category, SUM(revenue) AS revenue
    FROM (SELECT DISTINCT campaign, category, event_id, revenue FROM attributed) AS a
    GROUP BY campaign, category
),
by_resolutions AS (
    SELECT campaign, category, COUNT(*) AS resolutions, SUM(support_cost) AS support_cost
    FROM resolutions GROUP BY campaign, category
),
totals AS (
    SELECT m.campaign, m.category, m.messages, m.messaging_cost,
           COALESCE(s.support_cost, 0) AS support_cost,
           m.messaging_cost + COALESCE(s.support_cost, 0) AS cost,
           COALESCE(s.resolutions, 0) AS resolutions,
           COALESCE(c.conversions, 0) AS conversions,
           COALESCE(v.revenue, 0) AS revenue
    FROM by_messages m
    LEFT JOIN by_conversions c ON (c.campaign IS NOT DISTINCT FROM m.campaign) AND (c.category IS NOT DISTINCT FROM m.category)
    LEFT JOIN by_revenue v ON (v.campaign IS NOT DISTINCT FROM m.campaign) AND (v.category IS NOT DISTINCT FROM m.category)
    LEFT JOIN by_resolutions s ON (s.campaign IS NOT DISTINCT FROM m.campaign) AND (s.category IS NOT DISTINCT FROM m.category)
)
SELECT campaign, category, messages, messaging_cost, support_cost, cost, resolutions, conversions, revenue,
       CASE WHEN resolutions = 0 THEN NULL ELSE cost / resolutions END AS cost_per_resolution,
       CASE WHEN conversions = 0 THEN NULL ELSE cost / conversions END AS cost_per_conversion
FROM totals
ORDER BY campaign, category

-- sla: response and resolution times, per day the conversation opened and queue.
--
-- first response: seconds from the customer's first message (the earliest customer event of
-- the conversation, else its opening) to the first bot or agent reply after it.
-- resolution: seconds from opening to the first resolution.
-- first_contact_resolution_rate: resolved conversations not reopened within 7 days of the
-- first resolution / resolved conversations.
-- Conversations are grouped and joined as conv_key, id_key() of their ids: 20% less time than
-- on the strings at 10 million events (paired runs). rollup/sla.sql gives the same rows from
-- the conversation rollup; both end in sla_times.sql and
-- sla_summary.sql.
WITH ev AS (
    SELECT id_key(conversation_id) AS conv_key, event_type, occurred_at, date, queue, actor
    FROM events
    WHERE conversation_id IS NOT NULL AND date >= $from
),
conv AS (
    SELECT conv_key,
           MIN(CASE WHEN event_type = 'conversation.opened' THEN occurred_at END) AS opened_at,
           min_text(CASE WHEN event_type = 'conversation.opened' THEN date END) AS day,
           max_text(queue) AS queue,
           MIN(CASE WHEN actor = 'customer' OR event_type = 'message.inbound' THEN occurred_at END) AS first_customer_at,
           MIN(CASE WHEN event_type = 'conversation.resolved' THEN occurred_at END) AS resolved_at
    FROM ev
    GROUP BY conv_key
),
-- Each conversation's replies (reopen false) and reopenings (true).
touches AS (
    SELECT conv_key, occurred_at AS at, event_type = 'conversation.reopened' AS reopen
    FROM ev
    WHERE event_type IN ('conversation.bot_reply', 'conversation.agent_reply', 'conversation.reopened')
),
{{sla_times}},
per_conv AS (SELECT * FROM joined)
{{sla_summary}}

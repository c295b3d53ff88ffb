-- conversation_facts over the events: one row per date and conversation, the columns of the
-- conversation rollup (src/rollup/conversations.rs, whose schema() says what each means).
--
-- Reports read `conversation_facts` from the rollup files where every events file has them,
-- else from this view. Every column is a MIN, MAX, "any" or set of the conversation's events
-- of that date, so a report that merges the rows per conversation gets the same answer from
-- either; first_response_at and reopened_within_week are answers over the row's own events,
-- right for the conversation only where it has one row (sla merges the reply and reopening
-- times of the others).
WITH conversation_events AS (
    SELECT date, id_key(conversation_id) AS conversation_key, event_type, occurred_at, queue, actor, contact_key
    FROM events
    WHERE conversation_id IS NOT NULL
),
per_date AS (
    SELECT date,
           conversation_key,
           MAX(id_key(contact_key)) AS contact_key,
           MIN(CASE WHEN event_type = 'conversation.opened' THEN occurred_at END) AS opened_at,
           max_text(CASE WHEN event_type LIKE 'conversation.%' THEN queue END) AS queue,
           max_text(queue) AS any_queue,
           MIN(CASE WHEN actor = 'customer' OR event_type = 'message.inbound' THEN occurred_at END) AS customer_at,
           MIN(CASE WHEN event_type = 'conversation.resolved' THEN occurred_at END) AS resolved_at,
           MIN(CASE WHEN event_type = 'conversation.handoff' THEN occurred_at END) AS handoff_at,
           bool_or(event_type = 'conversation.bot_reply') AS bot_replied,
           -- The times as they come: sla takes their first and looks for any in a window, which
           -- neither order nor repeats change (the rollup keeps them sorted and distinct to
           -- store them small; sorting them here made sla over the events 8x slower).
           array_agg(occurred_at) FILTER (WHERE event_type IN ('conversation.bot_reply', 'conversation.agent_reply'))
               AS replies,
           array_agg(occurred_at) FILTER (WHERE event_type = 'conversation.reopened') AS reopens
    FROM conversation_events
    GROUP BY date, conversation_key
),
-- The row's own answers need its first times, so they come from a second pass over its
-- replies and reopenings only.
answers AS (
    SELECT p.date,
           p.conversation_key,
           MIN(CASE WHEN t.event_type <> 'conversation.reopened'
                     AND t.occurred_at >= COALESCE(p.customer_at, p.opened_at) THEN t.occurred_at END)
               AS first_response_at,
           bool_or(t.event_type = 'conversation.reopened'
                   AND t.occurred_at >= p.resolved_at
                   AND date_part('epoch', t.occurred_at) <= date_part('epoch', p.resolved_at) + 604800)
               AS reopened_within_week
    FROM conversation_events t
    JOIN per_date p ON p.date = t.date AND p.conversation_key = t.conversation_key
    WHERE t.event_type IN ('conversation.bot_reply', 'conversation.agent_reply', 'conversation.reopened')
    GROUP BY p.date, p.conversation_key
)
SELECT p.date, p.conversation_key, p.contact_key, p.opened_at, p.queue, p.any_queue, p.customer_at,
       p.resolved_at, p.handoff_at, p.bot_replied, p.replies, p.reopens, a.first_response_at,
       COALESCE(a.reopened_within_week, false) AS reopened_within_week
FROM answers a
RIGHT JOIN per_date p ON p.date = a.date AND p.conversation_key = a.conversation_key

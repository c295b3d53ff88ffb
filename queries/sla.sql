-- sla: response and resolution times, per day the conversation opened and queue.
--
-- first response: seconds from the customer's first message (the earliest customer event of
-- the conversation, else its opening) to the first bot or agent reply after it.
-- resolution: seconds from opening to the first resolution.
-- first_contact_resolution_rate: resolved conversations not reopened within 7 days of the
-- first resolution / resolved conversations.
WITH ev AS (
    SELECT conversation_id, event_type, occurred_at, date, queue, actor
    FROM events
    WHERE conversation_id IS NOT NULL AND date >= $from
),
conv AS (
    SELECT conversation_id,
           MIN(CASE WHEN event_type = 'conversation.opened' THEN occurred_at END) AS opened_at,
           MIN(CASE WHEN event_type = 'conversation.opened' THEN date END) AS day,
           MAX(queue) AS queue,
           MIN(CASE WHEN actor = 'customer' OR event_type = 'message.inbound' THEN occurred_at END) AS first_customer_at,
           MIN(CASE WHEN event_type = 'conversation.resolved' THEN occurred_at END) AS resolved_at
    FROM ev
    GROUP BY conversation_id
),
start AS (
    SELECT conversation_id, day, queue, opened_at, resolved_at,
           COALESCE(first_customer_at, opened_at) AS customer_at
    FROM conv
    WHERE opened_at IS NOT NULL AND day <= $to
),
first_reply AS (
    SELECT s.conversation_id, MIN(e.occurred_at) AS replied_at
    FROM start s
    JOIN ev e ON e.conversation_id = s.conversation_id
    WHERE e.event_type IN ('conversation.bot_reply', 'conversation.agent_reply') AND e.occurred_at >= s.customer_at
    GROUP BY s.conversation_id
),
reopened AS (
    SELECT DISTINCT s.conversation_id
    FROM start s
    JOIN ev e ON e.conversation_id = s.conversation_id
    WHERE e.event_type = 'conversation.reopened'
      AND s.resolved_at IS NOT NULL
      AND e.occurred_at >= s.resolved_at
      AND date_part('epoch', e.occurred_at) <= date_part('epoch', s.resolved_at) + 604800
),
per_conv AS (
    SELECT s.day, s.queue,
           date_part('epoch', f.replied_at) - date_part('epoch', s.customer_at) AS first_response_s,
           date_part('epoch', s.resolved_at) - date_part('epoch', s.opened_at) AS resolution_s,
           CASE WHEN s.resolved_at IS NULL THEN 0 ELSE 1 END AS resolved,
           CASE WHEN s.resolved_at IS NOT NULL AND r.conversation_id IS NULL THEN 1 ELSE 0 END AS fcr
    FROM start s
    LEFT JOIN first_reply f ON f.conversation_id = s.conversation_id
    LEFT JOIN reopened r ON r.conversation_id = s.conversation_id
)
SELECT day,
       queue,
       COUNT(*) AS conversations,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY first_response_s) AS p50_first_response_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY first_response_s) AS p90_first_response_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY resolution_s) AS p50_resolution_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY resolution_s) AS p90_resolution_s,
       CASE WHEN SUM(resolved) = 0 THEN NULL ELSE CAST(SUM(fcr) AS DOUBLE) / SUM(resolved) END
           AS first_contact_resolution_rate
FROM per_conv
GROUP BY day, queue
ORDER BY day, queue

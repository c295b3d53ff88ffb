-- sla, as convoscope computed it over the events before its reports read the facts tables
-- (queries/facts/): kept for the benchmark as DuckDB's formulation over plain events, the
-- query a team without convoscope would run. The report's definition is queries/sla.sql.
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
-- sla_times: sla's times per conversation (joined: conv_key, day, queue, first_response_s,
-- resolution_s, resolved, fcr) from its conversations (conv: conv_key, opened_at, day, queue,
-- first_customer_at, resolved_at) and their replies and reopenings (touches: conv_key, at,
-- reopen), spliced into sla.sql and rollup/sla.sql.
start AS (
    SELECT conv_key, day, queue, opened_at, resolved_at,
           COALESCE(first_customer_at, opened_at) AS customer_at
    FROM conv
    WHERE opened_at IS NOT NULL AND day <= $to
),
-- First reply and reopening come from one join of the conversations with their replies and
-- reopenings (a LEFT JOIN, so conversations with neither stay): DataFusion computes a CTE once
-- per reference, and separate first_reply and reopened CTEs cost two more scans and
-- aggregations (2x slower at 3 million events).
joined AS (
    SELECT s.conv_key,
           max_text(s.day) AS day,
           max_text(s.queue) AS queue,
           date_part('epoch', MIN(CASE WHEN NOT t.reopen AND t.at >= s.customer_at THEN t.at END))
             - date_part('epoch', MAX(s.customer_at)) AS first_response_s,
           date_part('epoch', MAX(s.resolved_at)) - date_part('epoch', MAX(s.opened_at)) AS resolution_s,
           CASE WHEN MAX(s.resolved_at) IS NULL THEN 0 ELSE 1 END AS resolved,
           CASE WHEN MAX(s.resolved_at) IS NOT NULL
                 AND MAX(CASE WHEN t.reopen
                               AND t.at >= s.resolved_at
                               AND date_part('epoch', t.at) <= date_part('epoch', s.resolved_at) + 604800
                          THEN 1 ELSE 0 END) = 0
                THEN 1 ELSE 0 END AS fcr
    FROM start s
    LEFT JOIN touches t ON t.conv_key = s.conv_key
    GROUP BY s.conv_key
)
,
per_conv AS (SELECT * FROM joined)
-- sla_summary: the sla report from its times per conversation (per_conv: day, queue,
-- first_response_s, resolution_s, resolved, fcr), spliced into sla.sql and rollup/sla.sql.
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


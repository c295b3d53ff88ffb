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

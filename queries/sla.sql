-- sla: response and resolution times, per day the conversation opened and queue.
--
-- first response: seconds from the customer's first message (the earliest customer event of
-- the conversation, else its opening) to the first bot or agent reply after it.
-- resolution: seconds from opening to the first resolution.
-- first_contact_resolution_rate: resolved conversations not reopened within 7 days of the
-- first resolution / resolved conversations, over those whose 7 days had passed when the report
-- ran: a conversation resolved a minute ago has not yet had the chance to be reopened.
-- reopen_window_open counts the resolved conversations still inside their 7 days.
--
-- conversation_facts has a row per conversation and file (or date), merged here per
-- conversation over the dates >= $from. A conversation of one row (88% of them in a store of
-- 10 million generated events) has its first response and reopening in that row already; the
-- others take them from a join of their merged times with their reply and reopening times,
-- unnested from their rows' lists.
--
-- The facts are read once (`fact_rows`): merged, and the lists of the conversations of several
-- rows, both come from it. Reading the files once per use (three times) took ~1.4x the time
-- where a day has ten files, since each read pays for every file; unnesting only those
-- conversations' lists, not every row's, is the rest.
WITH fact_rows AS MATERIALIZED (
    SELECT conversation_key, date, opened_at, any_queue, customer_at, resolved_at, first_response_at,
           reopened_within_week, replies, reopens
    FROM conversation_facts
    WHERE date >= $from
),
merged AS MATERIALIZED (
    SELECT conversation_key AS conv_key,
           COUNT(*) AS pieces,
           MIN(opened_at) AS opened_at,
           min_text(CASE WHEN opened_at IS NOT NULL THEN date END) AS day,
           max_text(any_queue) AS queue,
           MIN(customer_at) AS first_customer_at,
           MIN(resolved_at) AS resolved_at,
           MIN(first_response_at) AS first_response_at,
           bool_or(reopened_within_week) AS reopened_within_week
    FROM fact_rows
    GROUP BY conversation_key
),
conv AS (
    SELECT conv_key, opened_at, day, queue, first_customer_at, resolved_at FROM merged WHERE pieces > 1
),
spread AS MATERIALIZED (
    SELECT conversation_key AS conv_key, replies, reopens
    FROM fact_rows
    WHERE conversation_key IN (SELECT conv_key FROM conv)
),
touches AS (
    SELECT conv_key, unnest(replies) AS at, false AS reopen FROM spread
    UNION ALL
    SELECT conv_key, unnest(reopens) AS at, true AS reopen FROM spread
),
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
                THEN 1 ELSE 0 END AS fcr,
           CASE WHEN date_part('epoch', MAX(s.resolved_at)) + 604800 <= date_part('epoch', now()) THEN 1 ELSE 0 END
               AS closed
    FROM start s
    LEFT JOIN touches t ON t.conv_key = s.conv_key
    GROUP BY s.conv_key
),
per_conv AS (
    SELECT day, queue, first_response_s, resolution_s, resolved, fcr, closed FROM joined
    UNION ALL
    SELECT day,
           queue,
           date_part('epoch', first_response_at)
             - date_part('epoch', COALESCE(first_customer_at, opened_at)) AS first_response_s,
           date_part('epoch', resolved_at) - date_part('epoch', opened_at) AS resolution_s,
           CASE WHEN resolved_at IS NULL THEN 0 ELSE 1 END AS resolved,
           CASE WHEN resolved_at IS NOT NULL AND NOT reopened_within_week THEN 1 ELSE 0 END AS fcr,
           CASE WHEN date_part('epoch', resolved_at) + 604800 <= date_part('epoch', now()) THEN 1 ELSE 0 END AS closed
    FROM merged
    WHERE pieces = 1 AND opened_at IS NOT NULL AND day <= $to
)
SELECT day,
       queue,
       COUNT(*) AS conversations,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY first_response_s) AS p50_first_response_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY first_response_s) AS p90_first_response_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY resolution_s) AS p50_resolution_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY resolution_s) AS p90_resolution_s,
       CASE WHEN SUM(closed) = 0 THEN NULL ELSE CAST(SUM(fcr * closed) AS DOUBLE) / SUM(closed) END
           AS first_contact_resolution_rate,
       SUM(resolved) - SUM(closed) AS reopen_window_open
FROM per_conv
GROUP BY day, queue
ORDER BY day, queue


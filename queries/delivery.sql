-- delivery: receipts and their latencies, per send date, template and locale.
--
-- Cohort as in funnel. p50/p95_delivery_s: seconds from the first sent to the first delivered
-- status; p50_read_s: seconds from delivered to read (messages read without a delivered
-- receipt count as delivered and read, but have no latency to measure).
WITH {{cohort}},
status AS (
    SELECT id_key(message_id) AS message_key,
           MIN(CASE WHEN event_type = 'message.delivered' THEN occurred_at END) AS delivered_at,
           MIN(CASE WHEN event_type = 'message.read' THEN occurred_at END) AS read_at,
           MAX(CASE WHEN event_type = 'message.failed' THEN 1 ELSE 0 END) AS failed
    FROM events
    WHERE event_type IN ('message.delivered', 'message.read', 'message.failed') AND date >= $from
    GROUP BY id_key(message_id)
),
per_message AS (
    SELECT s.day, s.template, s.locale,
           CASE WHEN st.delivered_at IS NOT NULL OR st.read_at IS NOT NULL THEN 1 ELSE 0 END AS delivered,
           CASE WHEN st.read_at IS NOT NULL THEN 1 ELSE 0 END AS was_read,
           COALESCE(st.failed, 0) AS failed,
           date_part('epoch', st.delivered_at) - date_part('epoch', s.sent_at) AS delivery_s,
           date_part('epoch', st.read_at) - date_part('epoch', st.delivered_at) AS read_s
    -- status RIGHT JOIN cohort: DataFusion builds its hash table from the left input.
    FROM status st
    RIGHT JOIN cohort s ON st.message_key = s.message_key
)
SELECT day,
       template,
       locale,
       COUNT(*) AS sent,
       SUM(delivered) AS delivered,
       SUM(was_read) AS "read",
       SUM(failed) AS failed,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY delivery_s) AS p50_delivery_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY delivery_s) AS p95_delivery_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY read_s) AS p50_read_s
FROM per_message
GROUP BY day, template, locale
ORDER BY day, template, locale

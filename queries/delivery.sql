-- delivery: receipts and their latencies, per send date, template and locale.
--
-- Cohort as in funnel. p50/p95_delivery_s: seconds from the first sent to the first delivered
-- status; p50_read_s: seconds from delivered to read (messages read without a delivered
-- receipt count as delivered and read, but have no latency to measure).
WITH {{cohort}},
per_message AS (
    SELECT day, template, locale,
           CASE WHEN delivered_at IS NOT NULL OR read_at IS NOT NULL THEN 1 ELSE 0 END AS delivered,
           CASE WHEN read_at IS NOT NULL THEN 1 ELSE 0 END AS was_read,
           CASE WHEN failed THEN 1 ELSE 0 END AS failed,
           date_part('epoch', delivered_at) - date_part('epoch', sent_at) AS delivery_s,
           date_part('epoch', read_at) - date_part('epoch', delivered_at) AS read_s
    FROM cohort
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

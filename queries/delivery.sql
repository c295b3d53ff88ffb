-- delivery: receipts and their latencies, per send date, template and locale.
--
-- Cohort as in funnel. p50/p95_delivery_s: seconds from the first sent to the first delivered
-- status; p50_read_s: seconds from delivered to read (messages read without a delivered
-- receipt count as delivered and read, but have no latency to measure).
-- With --by, each row is also per level, as in funnel (the 20 levels with the most messages,
-- the rest as 'other'); without, `breakdown` is '' and the report leaves it out.
WITH {{cohort}},
{{breakdown}},
-- Not MATERIALIZED: without a breakdown only the rows read it (the levels' filter is false and
-- their side is gone from the plan), and materializing it cost 5% on every run (10 million
-- events, paired); a breakdown merges the message facts twice instead.
per_message AS (
    SELECT day, template, locale, level,
           CASE WHEN delivered_at IS NOT NULL OR read_at IS NOT NULL THEN 1 ELSE 0 END AS delivered,
           CASE WHEN read_at IS NOT NULL THEN 1 ELSE 0 END AS was_read,
           CASE WHEN failed THEN 1 ELSE 0 END AS failed,
           date_part('epoch', delivered_at) - date_part('epoch', sent_at) AS delivery_s,
           date_part('epoch', read_at) - date_part('epoch', delivered_at) AS read_s
    FROM cohort_levels
),
-- The 20 levels with the most messages; none without a breakdown.
top_levels AS (
    SELECT level FROM per_message WHERE $by <> '' GROUP BY level ORDER BY COUNT(*) DESC, level LIMIT 20
),
leveled AS (
    SELECT m.*, CASE WHEN $by = '' THEN '' ELSE COALESCE(t.level, 'other') END AS breakdown
    FROM top_levels t
    RIGHT JOIN per_message m ON t.level = m.level
)
SELECT day,
       template,
       locale,
       breakdown,
       COUNT(*) AS sent,
       SUM(delivered) AS delivered,
       SUM(was_read) AS "read",
       SUM(failed) AS failed,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY delivery_s) AS p50_delivery_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY delivery_s) AS p95_delivery_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY read_s) AS p50_read_s
FROM leveled
GROUP BY day, template, locale, breakdown
ORDER BY day, template, locale, breakdown

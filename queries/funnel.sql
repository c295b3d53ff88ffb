-- funnel: how far messages get, per campaign and template.
--
-- Cohort: messages first sent (send.accepted or message.sent) on a date in [$from, $to].
-- Their receipts, replies and conversions count even when they arrive after $to.
-- A read implies delivered (Meta may skip the delivered webhook). A reply is an
-- interaction.reply or message.inbound whose reply_to is the message. A conversion counts when
-- the same contact converts within $window_s seconds after the send; a conversion count is
-- final only once that window has closed, so `converted` and conversion_rate are over the
-- messages whose window had closed when the report ran, and `window_open` counts the rest.
-- Every count is of distinct messages, so a duplicated event is counted once.
-- With --by ($by, $then_by), each row is also per level (queries/breakdown.sql, spliced in):
-- the 20 levels with the most messages by name, the rest as 'other'; without, `breakdown` is ''
-- and the report leaves it out.
WITH {{cohort}},
{{breakdown}},
-- The cohort is read twice, by the per-message counts and by conversions. Without the hint
-- DataFusion would merge the message facts twice; MATERIALIZED computes them once
-- (src/analytics/materialize.rs; 10 million events, paired runs: 15-20% less time).
cohort_once AS MATERIALIZED (
    SELECT message_key, sent_at, contact, campaign, template,
           CASE WHEN delivered_at IS NOT NULL OR read_at IS NOT NULL THEN 1 ELSE 0 END AS delivered,
           CASE WHEN read_at IS NOT NULL THEN 1 ELSE 0 END AS was_read,
           CASE WHEN replied THEN 1 ELSE 0 END AS replied,
           level
    FROM cohort_levels
),
-- The 20 levels with the most messages; none without a breakdown, so that run does no more work.
top_levels AS (
    SELECT level FROM cohort_once WHERE $by <> '' GROUP BY level ORDER BY COUNT(*) DESC, level LIMIT 20
),
{{conversions}},
-- A LEFT JOIN written as RIGHT JOIN with the cohort last: DataFusion builds its hash table
-- from the left input, and the cohort is the larger side (20-25% faster at 3 million events
-- than building from the cohort and emitting its unmatched rows at the end).
per_message AS (
    SELECT s.campaign, s.template, CASE WHEN $by = '' THEN '' ELSE COALESCE(t.level, 'other') END AS breakdown,
           s.delivered, s.was_read, s.replied,
           CASE WHEN cv.message_key IS NULL THEN 0 ELSE 1 END AS converted,
           CASE WHEN date_part('epoch', s.sent_at) + $window_s <= date_part('epoch', now()) THEN 1 ELSE 0 END
               AS closed
    FROM conversions cv
    RIGHT JOIN (top_levels t RIGHT JOIN cohort_once s ON t.level = s.level) ON cv.message_key = s.message_key
)
SELECT campaign,
       template,
       breakdown,
       COUNT(*) AS sent,
       SUM(delivered) AS delivered,
       SUM(was_read) AS "read",
       SUM(replied) AS replied,
       SUM(converted * closed) AS converted,
       COUNT(*) - SUM(closed) AS window_open,
       CAST(SUM(delivered) AS DOUBLE) / COUNT(*) AS delivery_rate,
       CAST(SUM(was_read) AS DOUBLE) / COUNT(*) AS read_rate,
       CAST(SUM(replied) AS DOUBLE) / COUNT(*) AS reply_rate,
       CASE WHEN SUM(closed) > 0 THEN CAST(SUM(converted * closed) AS DOUBLE) / SUM(closed) END AS conversion_rate
FROM per_message
GROUP BY campaign, template, breakdown
ORDER BY campaign, template, breakdown

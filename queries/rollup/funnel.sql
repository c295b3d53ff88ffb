-- funnel, from the message rollup: the same report as ../funnel.sql, whose header says what
-- each column means. Receipts and replies are columns of the cohort here; conversions are
-- still matched against the conversion events.
WITH {{cohort}},
-- Read twice (conversions and the per-message counts): computed once.
cohort_once AS MATERIALIZED (
    SELECT message_key, sent_at, contact, campaign, template,
           CASE WHEN delivered_at IS NOT NULL OR read_at IS NOT NULL THEN 1 ELSE 0 END AS delivered,
           CASE WHEN read_at IS NOT NULL THEN 1 ELSE 0 END AS was_read,
           CASE WHEN replied THEN 1 ELSE 0 END AS replied
    FROM cohort
),
conversions AS (
    SELECT DISTINCT s.message_key
    FROM cohort_once s
    JOIN events c ON id_key(c.contact_key) = s.contact
    WHERE c.event_type = 'conversion'
      AND c.date >= $from
      AND c.occurred_at >= s.sent_at
      AND date_part('epoch', c.occurred_at) <= date_part('epoch', s.sent_at) + $window_s
),
-- RIGHT JOIN with the cohort last: DataFusion builds its hash table from the left input.
per_message AS (
    SELECT s.campaign, s.template, s.delivered, s.was_read, s.replied,
           CASE WHEN cv.message_key IS NULL THEN 0 ELSE 1 END AS converted
    FROM conversions cv
    RIGHT JOIN cohort_once s ON cv.message_key = s.message_key
)
SELECT campaign,
       template,
       COUNT(*) AS sent,
       SUM(delivered) AS delivered,
       SUM(was_read) AS "read",
       SUM(replied) AS replied,
       SUM(converted) AS converted,
       CAST(SUM(delivered) AS DOUBLE) / COUNT(*) AS delivery_rate,
       CAST(SUM(was_read) AS DOUBLE) / COUNT(*) AS read_rate,
       CAST(SUM(replied) AS DOUBLE) / COUNT(*) AS reply_rate,
       CAST(SUM(converted) AS DOUBLE) / COUNT(*) AS conversion_rate
FROM per_message
GROUP BY campaign, template
ORDER BY campaign, template

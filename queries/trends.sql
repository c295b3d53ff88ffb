-- trends: the cohort per day, or per week ($interval: ISO weeks, from Monday), of its send, with
-- the rates growth teams watch.
--
-- Cohort, receipts and replies as in funnel; a conversion as in funnel (the contact converts
-- within $window_s seconds after the send); cost as in cost (the message's own cost, else the
-- rate card's price when it is billable). failed: messages with a message.failed.
--
-- A conversion rate is final only once the attribution window has closed: conversion_rate is
-- over the messages whose window had closed when the report ran (`window_closed`), and
-- `window_open` counts the messages still inside it, whose conversions may yet come.
--
-- With `--compare previous` the cohort starts at $from, the first day of the period before the
-- one asked for (as long as it, ending the day before $period_from); `previous` marks that
-- period's rows, and the report pairs each with the day or week one period later
-- (src/analytics/reports/trends.rs). Without it, $period_from is $from and no row is previous.
WITH {{cohort}},
{{priced}},
-- Read twice (the per-message counts and conversions): MATERIALIZED computes it once.
cohort_once AS MATERIALIZED (
    SELECT message_key, sent_at, contact, CAST(day AS DATE) AS day,
           CASE WHEN delivered_at IS NOT NULL OR read_at IS NOT NULL THEN 1 ELSE 0 END AS delivered,
           CASE WHEN read_at IS NOT NULL THEN 1 ELSE 0 END AS was_read,
           CASE WHEN replied THEN 1 ELSE 0 END AS replied,
           CASE WHEN failed THEN 1 ELSE 0 END AS failed,
           cost
    FROM priced_cohort
),
{{conversions}},
per_message AS (
    SELECT s.day, s.delivered, s.was_read, s.replied, s.failed, s.cost,
           CASE WHEN cv.message_key IS NULL THEN 0 ELSE 1 END AS converted,
           CASE WHEN date_part('epoch', s.sent_at) + $window_s <= date_part('epoch', now()) THEN 1 ELSE 0 END
               AS closed
    FROM conversions cv
    RIGHT JOIN cohort_once s ON cv.message_key = s.message_key
),
periods AS (
    SELECT day < CAST($period_from AS DATE) AS previous,
           CASE WHEN $interval = 'week' THEN CAST(date_trunc('week', CAST(day AS TIMESTAMP)) AS DATE)
                ELSE day END AS period,
           delivered, was_read, replied, failed, cost, converted, closed
    FROM per_message
)
SELECT previous,
       period,
       COUNT(*) AS sent,
       SUM(delivered) AS delivered,
       SUM(was_read) AS "read",
       SUM(replied) AS replied,
       SUM(failed) AS failed,
       SUM(converted * closed) AS converted,
       SUM(closed) AS window_closed,
       COUNT(*) - SUM(closed) AS window_open,
       SUM(cost) AS cost,
       CAST(SUM(delivered) AS DOUBLE) / COUNT(*) AS delivery_rate,
       CAST(SUM(was_read) AS DOUBLE) / COUNT(*) AS read_rate,
       CAST(SUM(replied) AS DOUBLE) / COUNT(*) AS reply_rate,
       CAST(SUM(failed) AS DOUBLE) / COUNT(*) AS failure_rate,
       CASE WHEN SUM(closed) > 0 THEN CAST(SUM(converted * closed) AS DOUBLE) / SUM(closed) END AS conversion_rate
FROM periods
GROUP BY previous, period
ORDER BY previous, period

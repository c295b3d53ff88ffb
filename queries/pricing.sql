-- pricing: what the messages sent in the range cost, per day of the send, pricing category,
-- pricing type and country, against what they brought.
--
-- Cohort, receipts and clicks as in templates; conversions as in funnel. `pricing_type` is
-- Meta's pricing.type on the message's statuses (regular, free_customer_service,
-- free_entry_point), kept by ingest in attributes and by the message rollup as a column (the
-- cohort's); null where the provider sends none. Cost and `unpriced` as queries/priced.sql
-- says.
-- cost_per_delivered, _read, _click: the row's cost over those counts. A conversion is final
-- only once the attribution window has closed: `converted` and cost_per_conversion count the
-- messages whose window had closed when the report ran, and `window_open` the rest.
WITH {{cohort}},
{{priced}},
-- Read three times (conversions, clicks, per message): MATERIALIZED computes it once.
cohort_once AS MATERIALIZED (
    SELECT message_key, sent_at, contact, day, category, country, pricing_type, cost, unpriced,
           CASE WHEN delivered_at IS NOT NULL OR read_at IS NOT NULL THEN 1 ELSE 0 END AS delivered,
           CASE WHEN read_at IS NOT NULL THEN 1 ELSE 0 END AS was_read,
           CASE WHEN billable THEN 1 ELSE 0 END AS billable,
           CASE WHEN date_part('epoch', sent_at) + $window_s <= date_part('epoch', now()) THEN 1 ELSE 0 END
               AS closed
    FROM priced_cohort
),
{{conversions}},
{{clicks}},
totals AS (
    SELECT CAST(s.day AS DATE) AS day, s.category, s.pricing_type, s.country,
           COUNT(*) AS messages,
           SUM(s.billable) AS billable,
           SUM(s.unpriced) AS unpriced,
           SUM(s.delivered) AS delivered,
           SUM(s.was_read) AS was_read,
           SUM(CASE WHEN k.message_key IS NULL THEN 0 ELSE 1 END) AS clicked,
           SUM(CASE WHEN cv.message_key IS NULL THEN 0 ELSE s.closed END) AS converted,
           COUNT(*) - SUM(s.closed) AS window_open,
           SUM(s.cost) AS cost,
           SUM(s.cost * s.closed) AS cost_closed
    FROM conversions cv
    RIGHT JOIN (clicks k RIGHT JOIN cohort_once s ON k.message_key = s.message_key) ON cv.message_key = s.message_key
    GROUP BY CAST(s.day AS DATE), s.category, s.pricing_type, s.country
)
SELECT day, category, pricing_type, country, messages, billable, unpriced, delivered, was_read AS "read", clicked,
       converted, window_open, cost,
       CASE WHEN delivered = 0 THEN NULL ELSE cost / delivered END AS cost_per_delivered,
       CASE WHEN was_read = 0 THEN NULL ELSE cost / was_read END AS cost_per_read,
       CASE WHEN clicked = 0 THEN NULL ELSE cost / clicked END AS cost_per_click,
       CASE WHEN converted = 0 THEN NULL ELSE cost_closed / converted END AS cost_per_conversion
FROM totals
ORDER BY day, category, pricing_type, country

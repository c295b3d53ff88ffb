-- cost, from the message rollup: the same report as ../cost.sql, whose header says what each
-- column means. The messages' cohort and billing are one row per message here; conversions and
-- conversations are still read from their events.
WITH {{cohort}},
-- Read twice (the message totals and the attribution join): MATERIALIZED computes the
-- messages' aggregation once.
priced AS MATERIALIZED (
    SELECT m.message_key, m.campaign, m.contact, m.sent_at, m.category,
           COALESCE(CAST(m.cost_micros AS DOUBLE) / 1000000,
                    CASE WHEN m.billable THEN COALESCE(r.price, d.price, 0) ELSE 0 END) AS cost
    FROM cohort m
    LEFT JOIN rate_card r ON r.category = m.category AND r.country = m.country
    LEFT JOIN rate_card d ON d.category = m.category AND d.country = '*'
),
{{cost_totals}}

-- priced: the cohort with what each message cost, spliced in as a CTE where cost, trends and
-- pricing name it in double braces, after their cohort. `cost`: the message's own cost when
-- the provider or sender recorded one, else, when any status says it is billable, the rate
-- card's price for its category and the contact's country (the '*' row when the country is not
-- listed). `unpriced`: 1 for a billable message without its own cost that the card has no
-- price for; it costs 0 here and is counted, so a missing category shows instead of reading
-- as free.
priced_cohort AS (
    SELECT m.*,
           COALESCE(CAST(m.cost_micros AS DOUBLE) / 1000000,
                    CASE WHEN m.billable THEN COALESCE(r.price, d.price, 0) ELSE 0 END) AS cost,
           CASE WHEN m.cost_micros IS NULL AND m.billable AND r.price IS NULL AND d.price IS NULL THEN 1 ELSE 0 END
               AS unpriced
    FROM cohort m
    LEFT JOIN rate_card r ON r.category = m.category AND r.country = m.country
    LEFT JOIN rate_card d ON d.category = m.category AND d.country = '*'
)

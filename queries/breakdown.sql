-- breakdown: the cohort with each message's level for `--by`, spliced in as two CTEs where
-- funnel and delivery name it in double braces, after their cohort. The level is the value of
-- the key $by (country, locale, template, variant or category), or of two keys as
-- "first / second" ($then_by); '(none)' where the message has no value; '' without a
-- breakdown. A message's variant is read from the exposure facts only for a breakdown by
-- variant: otherwise the filter is false and the join has nothing to read.
variants AS (
    SELECT message_key, max_text(variant) AS variant
    FROM exposure_facts
    WHERE message_key IS NOT NULL AND ($by = 'variant' OR $then_by = 'variant')
    GROUP BY message_key
),
cohort_levels AS (
    SELECT c.*,
           CASE WHEN $by = '' THEN ''
                ELSE COALESCE(CASE $by WHEN 'country' THEN country WHEN 'locale' THEN locale
                                       WHEN 'template' THEN template WHEN 'variant' THEN variant
                                       WHEN 'category' THEN category END, '(none)')
                     || CASE WHEN $then_by = '' THEN ''
                             ELSE ' / ' || COALESCE(CASE $then_by WHEN 'country' THEN country WHEN 'locale' THEN locale
                                                                  WHEN 'template' THEN template
                                                                  WHEN 'variant' THEN variant
                                                                  WHEN 'category' THEN category END, '(none)') END
           END AS level
    FROM variants v
    RIGHT JOIN cohort c ON v.message_key = c.message_key
)

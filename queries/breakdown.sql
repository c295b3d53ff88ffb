-- breakdown: a message's level for `--by`, spliced where funnel and delivery name it in
-- double braces, over the columns country, locale, template, variant and category: the value of
-- the key $by, or of two keys as "first / second" ($then_by); '(none)' where the message has
-- no value; '' without a breakdown.
CASE WHEN $by = '' THEN ''
     ELSE COALESCE(CASE $by WHEN 'country' THEN country WHEN 'locale' THEN locale WHEN 'template' THEN template
                            WHEN 'variant' THEN variant WHEN 'category' THEN category END, '(none)')
          || CASE WHEN $then_by = '' THEN ''
                  ELSE ' / ' || COALESCE(CASE $then_by WHEN 'country' THEN country WHEN 'locale' THEN locale
                                                       WHEN 'template' THEN template WHEN 'variant' THEN variant
                                                       WHEN 'category' THEN category END, '(none)') END
END

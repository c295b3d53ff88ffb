-- failures, from the message rollup: the same report as ../failures.sql, whose header says
-- what each column means.
WITH {{cohort}},
-- Read twice (the messages sent per template and the failed ones): computed once.
cohort_once AS MATERIALIZED (
    SELECT message_key, template, failed FROM cohort
),
failed AS (
    SELECT DISTINCT id_key(message_id) AS message_key, error_code, error_title
    FROM events
    WHERE event_type = 'message.failed' AND date >= $from
),
-- Failures per code, title and template (of the cohort's messages the rollup marks failed:
-- the same failure events), and messages per template, unioned so that a null template is
-- one group like any other.
per_group AS (
    SELECT c.template, f.error_code, f.error_title, TRUE AS is_failure, COUNT(*) AS failed, 0 AS sent_part
    FROM failed f
    JOIN (SELECT message_key, template FROM cohort_once WHERE failed) c ON f.message_key = c.message_key
    GROUP BY c.template, f.error_code, f.error_title
    UNION ALL
    SELECT template, CAST(NULL AS INT), CAST(NULL AS VARCHAR), FALSE, 0, COUNT(*)
    FROM cohort_once
    GROUP BY template
),
counted AS (
    SELECT template, error_code, error_title, is_failure, failed,
           SUM(sent_part) OVER (PARTITION BY template) AS sent
    FROM per_group
)
SELECT error_code,
       error_title,
       template,
       failed,
       CAST(failed AS DOUBLE) / sent AS share_of_sent
FROM counted
WHERE is_failure
ORDER BY failed DESC, error_code, template

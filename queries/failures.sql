-- failures: why messages fail, per error code, title and template.
--
-- failed: distinct messages of the cohort with a message.failed status of that code.
-- share_of_sent: failed / messages of that template sent in the cohort.
WITH {{cohort}},
-- Read twice (the messages sent per template and the failed ones): computed once.
cohort_once AS MATERIALIZED (
    SELECT message_key, template, failed FROM cohort
),
-- The codes and titles are read from the failure events (the message facts say only that a
-- message failed).
failed AS (
    SELECT DISTINCT id_key(message_id) AS message_key, error_code, error_title
    FROM events
    WHERE event_type = 'message.failed' AND date >= $from
),
-- Failures per code, title and template (of the cohort's messages the facts mark failed: the
-- same failure events), and messages per template, unioned so that a null template is one
-- group like any other. The count of messages per template is a window over these few dozen
-- groups, not over the cohort (a window over 2.4 million messages sorted them all: 20% more
-- time at 10 million events).
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

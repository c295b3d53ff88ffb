-- failures: why messages fail, per error code, title and template.
--
-- failed: distinct messages of the cohort with a message.failed status of that code.
-- share_of_sent: failed / messages of that template sent in the cohort.
WITH {{cohort}},
sent_per_template AS (
    SELECT template, COUNT(*) AS sent FROM cohort GROUP BY template
),
failed AS (
    SELECT DISTINCT message_id, error_code, error_title
    FROM events
    WHERE event_type = 'message.failed' AND date >= $from
)
SELECT f.error_code,
       f.error_title,
       c.template,
       COUNT(DISTINCT f.message_id) AS failed,
       CAST(COUNT(DISTINCT f.message_id) AS DOUBLE) / MAX(t.sent) AS share_of_sent
FROM failed f
JOIN cohort c ON c.message_id = f.message_id
JOIN sent_per_template t ON t.template IS NOT DISTINCT FROM c.template
GROUP BY f.error_code, f.error_title, c.template
ORDER BY failed DESC, f.error_code, c.template

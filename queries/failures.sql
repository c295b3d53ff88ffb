-- failures: why messages fail, per error code, title and template.
--
-- failed: distinct messages of the cohort with a message.failed status of that code.
-- share_of_sent: failed / messages of that template sent in the cohort.
WITH {{cohort}},
-- The per-template count as a window over the cohort, not a second aggregation of it:
-- DataFusion computes a CTE once per reference, and grouping the cohort's sends by message
-- twice made the report 0.74 s, not 0.51, at 3 million events.
counted AS (
    SELECT message_key, template, COUNT(*) OVER (PARTITION BY template) AS sent FROM cohort
),
failed AS (
    SELECT DISTINCT id_key(message_id) AS message_key, error_code, error_title
    FROM events
    WHERE event_type = 'message.failed' AND date >= $from
)
SELECT f.error_code,
       f.error_title,
       c.template,
       COUNT(DISTINCT f.message_key) AS failed,
       CAST(COUNT(DISTINCT f.message_key) AS DOUBLE) / MAX(c.sent) AS share_of_sent
FROM failed f
JOIN counted c ON c.message_key = f.message_key
GROUP BY f.error_code, f.error_title, c.template
ORDER BY failed DESC, f.error_code, c.template

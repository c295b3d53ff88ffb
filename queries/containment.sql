-- containment: how much the bot resolves alone, per day the conversation opened and queue.
--
-- Cohort: conversations opened on a date in [$from, $to]. contained: resolved without a
-- handoff. containment_rate: contained / resolved (null when nothing was resolved).
--
-- conversation_facts has a row per conversation and file (or date), merged here per
-- conversation over the dates >= $from.
WITH conv AS (
    SELECT MIN(opened_at) AS opened_at,
           min_text(CASE WHEN opened_at IS NOT NULL THEN date END) AS day,
           max_text(queue) AS queue,
           MAX(CASE WHEN resolved_at IS NOT NULL THEN 1 ELSE 0 END) AS resolved,
           MAX(CASE WHEN handoff_at IS NOT NULL THEN 1 ELSE 0 END) AS handed_off
    FROM conversation_facts
    WHERE date >= $from
    GROUP BY conversation_key
)
SELECT day,
       queue,
       COUNT(*) AS conversations,
       SUM(resolved) AS resolved,
       SUM(CASE WHEN resolved = 1 AND handed_off = 0 THEN 1 ELSE 0 END) AS contained,
       SUM(handed_off) AS handed_off,
       CASE WHEN SUM(resolved) = 0 THEN NULL
            ELSE CAST(SUM(CASE WHEN resolved = 1 AND handed_off = 0 THEN 1 ELSE 0 END) AS DOUBLE) / SUM(resolved)
       END AS containment_rate
FROM conv
WHERE opened_at IS NOT NULL AND day <= $to
GROUP BY day, queue
ORDER BY day, queue


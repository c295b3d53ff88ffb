-- containment, as convoscope computed it over the events before its reports read the facts tables
-- (queries/facts/): kept for the benchmark as DuckDB's formulation over plain events, the
-- query a team without convoscope would run. The report's definition is queries/containment.sql.
-- containment: how much the bot resolves alone, per day the conversation opened and queue.
--
-- Cohort: conversations opened on a date in [$from, $to]. contained: resolved without a
-- handoff. containment_rate: contained / resolved (null when nothing was resolved).
--
-- Conversations are grouped by id_key(conversation_id) (src/analytics/id_key.rs): a number
-- hashes and compares faster than the string (10 million events: 21% less time, paired runs).
-- rollup/containment.sql gives the same rows from the conversation rollup.
WITH conv AS (
    SELECT MIN(CASE WHEN event_type = 'conversation.opened' THEN occurred_at END) AS opened_at,
           min_text(CASE WHEN event_type = 'conversation.opened' THEN date END) AS day,
           max_text(queue) AS queue,
           MAX(CASE WHEN event_type = 'conversation.resolved' THEN 1 ELSE 0 END) AS resolved,
           MAX(CASE WHEN event_type = 'conversation.handoff' THEN 1 ELSE 0 END) AS handed_off
    FROM events
    WHERE event_type LIKE 'conversation.%' AND conversation_id IS NOT NULL AND date >= $from
    GROUP BY id_key(conversation_id)
)
-- containment_rates: what containment computes from its conversations (conv: opened_at, day,
-- queue, resolved, handed_off), spliced into containment.sql and rollup/containment.sql.
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


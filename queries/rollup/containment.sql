-- containment from the conversation rollup (src/rollup/conversations.rs): the rows of
-- ../containment.sql, from one row per conversation and events file merged per conversation
-- over the files of dates >= $from.
WITH conv AS (
    SELECT MIN(opened_at) AS opened_at,
           min_text(CASE WHEN opened_at IS NOT NULL THEN date END) AS day,
           max_text(queue) AS queue,
           MAX(CASE WHEN resolved_at IS NOT NULL THEN 1 ELSE 0 END) AS resolved,
           MAX(CASE WHEN handoff_at IS NOT NULL THEN 1 ELSE 0 END) AS handed_off
    FROM conversations
    WHERE date >= $from
    GROUP BY conversation_key
)
{{containment_rates}}

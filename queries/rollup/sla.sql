-- sla from the conversation rollup (src/rollup/conversations.rs): the rows of ../sla.sql.
--
-- The rollup holds one row per conversation and events file, merged here per conversation over
-- the files of dates >= $from, as ../sla.sql reads the events. A conversation of one row (of
-- one file: 88% of them in a store of 10 million generated events) has its first response and
-- reopening in that row already; the others take them from the join of sla_times.sql, with
-- their reply and reopening times unnested.
--
-- The rollup is read once (`rollup_rows`): merged, and the lists of the conversations of several
-- rows, both come from it. Reading the files once per use (three times) took ~1.4x the time
-- where a day has ten files, since each read pays for every file (BENCHMARKS.md, section 2,
-- fifteenth round); unnesting only those conversations' lists, not every row's, is the rest.
WITH rollup_rows AS MATERIALIZED (
    SELECT conversation_key, date, opened_at, any_queue, customer_at, resolved_at, first_response_at,
           reopened_within_week, replies, reopens
    FROM conversations
    WHERE date >= $from
),
merged AS MATERIALIZED (
    SELECT conversation_key AS conv_key,
           COUNT(*) AS files,
           MIN(opened_at) AS opened_at,
           min_text(CASE WHEN opened_at IS NOT NULL THEN date END) AS day,
           max_text(any_queue) AS queue,
           MIN(customer_at) AS first_customer_at,
           MIN(resolved_at) AS resolved_at,
           MIN(first_response_at) AS first_response_at,
           bool_or(reopened_within_week) AS reopened_within_week
    FROM rollup_rows
    GROUP BY conversation_key
),
conv AS (
    SELECT conv_key, opened_at, day, queue, first_customer_at, resolved_at FROM merged WHERE files > 1
),
spread AS MATERIALIZED (
    SELECT conversation_key AS conv_key, replies, reopens
    FROM rollup_rows
    WHERE conversation_key IN (SELECT conv_key FROM conv)
),
touches AS (
    SELECT conv_key, unnest(replies) AS at, false AS reopen FROM spread
    UNION ALL
    SELECT conv_key, unnest(reopens) AS at, true AS reopen FROM spread
),
{{sla_times}},
per_conv AS (
    SELECT day, queue, first_response_s, resolution_s, resolved, fcr FROM joined
    UNION ALL
    SELECT day,
           queue,
           date_part('epoch', first_response_at)
             - date_part('epoch', COALESCE(first_customer_at, opened_at)) AS first_response_s,
           date_part('epoch', resolved_at) - date_part('epoch', opened_at) AS resolution_s,
           CASE WHEN resolved_at IS NULL THEN 0 ELSE 1 END AS resolved,
           CASE WHEN resolved_at IS NOT NULL AND NOT reopened_within_week THEN 1 ELSE 0 END AS fcr
    FROM merged
    WHERE files = 1 AND opened_at IS NOT NULL AND day <= $to
)
{{sla_summary}}

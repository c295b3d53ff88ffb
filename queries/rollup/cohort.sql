-- cohort, from the message rollup (src/rollup/messages.rs): the messages of ../cohort.sql, one row each,
-- with their receipts, billing and replies, spliced into the reports' rollup forms as
-- ../cohort.sql is into theirs.
--
-- The rollup holds one row per message and events file, each a MIN, MAX or "any" of that file's
-- events of the message; merged here per message over the files of dates >= $from, as the
-- reports read statuses. Send attributes come only from files of dates up to $to, as the
-- cohort's sends do. Same rows as ../cohort.sql's cohort joined with each report's status
-- aggregations, from a quarter of the rows and without the message ids' text.
messages_merged AS (
    SELECT message_key,
           MIN(CASE WHEN date <= $to THEN sent_at END) AS sent_at,
           min_text(CASE WHEN date <= $to AND sent_at IS NOT NULL THEN date END) AS day,
           max_text(CASE WHEN date <= $to THEN campaign END) AS campaign,
           max_text(CASE WHEN date <= $to THEN template END) AS template,
           max_text(CASE WHEN date <= $to THEN locale END) AS locale,
           MAX(CASE WHEN date <= $to THEN contact END) AS contact,
           MIN(delivered_at) AS delivered_at,
           MIN(read_at) AS read_at,
           bool_or(failed) AS failed,
           bool_or(replied) AS replied,
           bool_or(billable) AS billable,
           max_text(category) AS category,
           max_text(country) AS country,
           MAX(cost_micros) AS cost_micros
    FROM messages
    WHERE date >= $from
    GROUP BY message_key
),
cohort AS (
    SELECT * FROM messages_merged WHERE sent_at IS NOT NULL AND ($campaign = '' OR campaign = $campaign)
)

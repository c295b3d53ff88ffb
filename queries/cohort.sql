-- cohort: the messages a message report is about, spliced in where a report names it (in double
-- braces, as its first CTE).
--
-- One row per message first sent (send.accepted or message.sent) on a date in [$from, $to],
-- optionally of one campaign, with its receipts, replies and billing. message_facts has a row
-- per message and file (or date); they are merged here per message over the dates >= $from,
-- so receipts and replies count even when they arrive after $to. The send's attributes come
-- only from dates up to $to, as the cohort's sends do, and from whichever send row carries
-- them (Meta's sent status has no template; the send record has).
-- Messages and contacts are message_key and contact, id_key() of their ids: DataFusion groups
-- and joins a number faster than a string. max_text / min_text are MAX / MIN without a heap
-- allocation per message.
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
           MAX(cost_micros) AS cost_micros,
           max_text(pricing_type) AS pricing_type
    FROM message_facts
    WHERE date >= $from
    GROUP BY message_key
),
cohort AS (
    SELECT * FROM messages_merged WHERE sent_at IS NOT NULL AND ($campaign = '' OR campaign = $campaign)
)

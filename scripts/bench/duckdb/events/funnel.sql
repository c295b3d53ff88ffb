-- funnel, as convoscope computed it over the events before its reports read the facts tables
-- (queries/facts/): kept for the benchmark as DuckDB's formulation over plain events, the
-- query a team without convoscope would run. The report's definition is queries/funnel.sql.
-- funnel: how far messages get, per campaign and template.
--
-- Cohort: messages first sent (send.accepted or message.sent) on a date in [$from, $to].
-- Their receipts, replies and conversions count even when they arrive after $to.
-- A read implies delivered (Meta may skip the delivered webhook). A reply is an
-- interaction.reply or message.inbound whose reply_to is the message. A conversion counts when
-- the same contact converts within $window_s seconds after the send.
-- Every count is of distinct messages, so a duplicated event is counted once.
WITH -- cohort: the sends a message report is about, spliced into the reports that name it.
--
-- One row per message first sent (send.accepted or message.sent) on a date in [$from, $to],
-- optionally of one campaign. Attributes come from whichever of its send rows carries them
-- (Meta's sent status has no template; the send record has). Messages and contacts are
-- identified by message_key and contact, id_key() of their ids: DataFusion groups and joins
-- a number faster than a string, and MAX of a number needs no copy of the 64-character key.
-- max_text / min_text are MAX / MIN without a heap allocation per message.
-- cost.sql computes this cohort inside its own per-message aggregation: a change here goes there too.
sends AS (
    SELECT id_key(message_id) AS message_key,
           MIN(occurred_at) AS sent_at,
           min_text(date) AS day,
           max_text(campaign) AS campaign,
           max_text(template) AS template,
           max_text(locale) AS locale,
           MAX(id_key(contact_key)) AS contact
    FROM events
    WHERE event_type IN ('send.accepted', 'message.sent')
      AND message_id IS NOT NULL
      AND date >= $from AND date <= $to
    GROUP BY id_key(message_id)
),
cohort AS (
    SELECT * FROM sends WHERE ($campaign = '' OR campaign = $campaign)
)
,
-- The cohort is read twice, by the per-message join and by conversions. Without the hint
-- DataFusion would aggregate the sends twice; MATERIALIZED computes them once
-- (src/analytics/materialize.rs; 10 million events, paired runs: 15-20% less time).
cohort_once AS MATERIALIZED (
    SELECT message_key, sent_at, contact, campaign, template FROM cohort
),
status AS (
    SELECT id_key(message_id) AS message_key,
           MAX(CASE WHEN event_type IN ('message.delivered', 'message.read') THEN 1 ELSE 0 END) AS delivered,
           MAX(CASE WHEN event_type = 'message.read' THEN 1 ELSE 0 END) AS was_read
    FROM events
    WHERE event_type IN ('message.delivered', 'message.read') AND date >= $from
    GROUP BY id_key(message_id)
),
replies AS (
    SELECT DISTINCT id_key(reply_to) AS message_key
    FROM events
    WHERE event_type IN ('interaction.reply', 'message.inbound') AND reply_to IS NOT NULL AND date >= $from
),
conversions AS (
    SELECT DISTINCT s.message_key
    FROM cohort_once s
    JOIN events c ON id_key(c.contact_key) = s.contact
    WHERE c.event_type = 'conversion'
      AND c.date >= $from
      AND c.occurred_at >= s.sent_at
      AND date_part('epoch', c.occurred_at) <= date_part('epoch', s.sent_at) + $window_s
),
-- Each LEFT JOIN is written as RIGHT JOIN with the cohort last: DataFusion builds its hash
-- table from the left input, and the cohort is the largest side (20-25% faster at 3 million
-- events than building from the cohort and emitting its unmatched rows at the end).
per_message AS (
    SELECT s.campaign, s.template,
           COALESCE(st.delivered, 0) AS delivered,
           COALESCE(st.was_read, 0) AS was_read,
           CASE WHEN r.message_key IS NULL THEN 0 ELSE 1 END AS replied,
           CASE WHEN cv.message_key IS NULL THEN 0 ELSE 1 END AS converted
    FROM conversions cv
    RIGHT JOIN (replies r
        RIGHT JOIN (status st
            RIGHT JOIN cohort_once s ON st.message_key = s.message_key)
        ON r.message_key = s.message_key)
    ON cv.message_key = s.message_key
)
SELECT campaign,
       template,
       COUNT(*) AS sent,
       SUM(delivered) AS delivered,
       SUM(was_read) AS "read",
       SUM(replied) AS replied,
       SUM(converted) AS converted,
       CAST(SUM(delivered) AS DOUBLE) / COUNT(*) AS delivery_rate,
       CAST(SUM(was_read) AS DOUBLE) / COUNT(*) AS read_rate,
       CAST(SUM(replied) AS DOUBLE) / COUNT(*) AS reply_rate,
       CAST(SUM(converted) AS DOUBLE) / COUNT(*) AS conversion_rate
FROM per_message
GROUP BY campaign, template
ORDER BY campaign, template

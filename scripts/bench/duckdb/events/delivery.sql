-- delivery, as convoscope computed it over the events before its reports read the facts tables
-- (queries/facts/): kept for the benchmark as DuckDB's formulation over plain events, the
-- query a team without convoscope would run. The report's definition is queries/delivery.sql.
-- delivery: receipts and their latencies, per send date, template and locale.
--
-- Cohort as in funnel. p50/p95_delivery_s: seconds from the first sent to the first delivered
-- status; p50_read_s: seconds from delivered to read (messages read without a delivered
-- receipt count as delivered and read, but have no latency to measure).
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
status AS (
    SELECT id_key(message_id) AS message_key,
           MIN(CASE WHEN event_type = 'message.delivered' THEN occurred_at END) AS delivered_at,
           MIN(CASE WHEN event_type = 'message.read' THEN occurred_at END) AS read_at,
           MAX(CASE WHEN event_type = 'message.failed' THEN 1 ELSE 0 END) AS failed
    FROM events
    WHERE event_type IN ('message.delivered', 'message.read', 'message.failed') AND date >= $from
    GROUP BY id_key(message_id)
),
per_message AS (
    SELECT s.day, s.template, s.locale,
           CASE WHEN st.delivered_at IS NOT NULL OR st.read_at IS NOT NULL THEN 1 ELSE 0 END AS delivered,
           CASE WHEN st.read_at IS NOT NULL THEN 1 ELSE 0 END AS was_read,
           COALESCE(st.failed, 0) AS failed,
           date_part('epoch', st.delivered_at) - date_part('epoch', s.sent_at) AS delivery_s,
           date_part('epoch', st.read_at) - date_part('epoch', st.delivered_at) AS read_s
    -- status RIGHT JOIN cohort: DataFusion builds its hash table from the left input.
    FROM status st
    RIGHT JOIN cohort s ON st.message_key = s.message_key
)
SELECT day,
       template,
       locale,
       COUNT(*) AS sent,
       SUM(delivered) AS delivered,
       SUM(was_read) AS "read",
       SUM(failed) AS failed,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY delivery_s) AS p50_delivery_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY delivery_s) AS p95_delivery_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY read_s) AS p50_read_s
FROM per_message
GROUP BY day, template, locale
ORDER BY day, template, locale

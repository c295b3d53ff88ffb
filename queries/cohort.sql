-- cohort: the sends a message report is about, spliced into the reports that name it.
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

-- cohort: the sends a message report is about, spliced into the reports that name it.
--
-- One row per message first sent (send.accepted or message.sent) on a date in [$from, $to],
-- optionally of one campaign. Attributes come from whichever of its send rows carries them
-- (Meta's sent status has no template; the send record has).
sends AS (
    SELECT message_id,
           MIN(occurred_at) AS sent_at,
           MIN(date) AS day,
           MAX(campaign) AS campaign,
           MAX(template) AS template,
           MAX(locale) AS locale,
           MAX(contact_key) AS contact_key
    FROM events
    WHERE event_type IN ('send.accepted', 'message.sent')
      AND message_id IS NOT NULL
      AND date >= $from AND date <= $to
    GROUP BY message_id
),
cohort AS (
    SELECT * FROM sends WHERE ($campaign = '' OR campaign = $campaign)
)

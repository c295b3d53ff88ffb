-- cohort over the events, for the formulations in this folder (the report's own cohort,
-- queries/cohort.sql, reads message_facts): the sends of messages first sent in [$from, $to].
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

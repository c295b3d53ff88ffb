-- engagement: per locale of the send.
--
-- sent: messages of the cohort; read_rate and reply_rate as in funnel; csat: mean score of the
-- csat.submitted events (each event once) of contacts sent a message in that locale.
WITH {{cohort}},
reads AS (
    SELECT DISTINCT message_id FROM events WHERE event_type = 'message.read' AND date >= $from
),
replies AS (
    SELECT DISTINCT reply_to AS message_id
    FROM events
    WHERE event_type IN ('interaction.reply', 'message.inbound') AND reply_to IS NOT NULL AND date >= $from
),
csat AS (
    SELECT event_id, MAX(contact_key) AS contact_key, MAX(csat_score) AS score
    FROM events
    WHERE event_type = 'csat.submitted' AND csat_score IS NOT NULL AND date >= $from
    GROUP BY event_id
),
locale_contacts AS (
    SELECT DISTINCT locale, contact_key FROM cohort WHERE contact_key IS NOT NULL
),
locale_csat AS (
    SELECT lc.locale, AVG(CAST(c.score AS DOUBLE)) AS csat
    FROM locale_contacts lc JOIN csat c ON c.contact_key = lc.contact_key
    GROUP BY lc.locale
),
per_locale AS (
    SELECT s.locale,
           COUNT(*) AS sent,
           SUM(CASE WHEN r.message_id IS NULL THEN 0 ELSE 1 END) AS was_read,
           SUM(CASE WHEN p.message_id IS NULL THEN 0 ELSE 1 END) AS replied
    FROM cohort s
    LEFT JOIN reads r ON r.message_id = s.message_id
    LEFT JOIN replies p ON p.message_id = s.message_id
    GROUP BY s.locale
)
SELECT l.locale,
       l.sent,
       CAST(l.was_read AS DOUBLE) / l.sent AS read_rate,
       CAST(l.replied AS DOUBLE) / l.sent AS reply_rate,
       c.csat
FROM per_locale l
LEFT JOIN locale_csat c ON c.locale IS NOT DISTINCT FROM l.locale
ORDER BY l.locale

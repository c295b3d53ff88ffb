-- buttons: per template and variant of the message, and button or list choice: how often it
-- was chosen and by how many contacts, over the messages delivered and read; and the links
-- followed from them.
--
-- Cohort as in funnel; a message's variant is that of its experiment exposure (null outside
-- an experiment). A tap: an interaction.reply naming a message of the cohort in reply_to, its
-- button or list row by interaction_title (else interaction_id); a link click: a link.click
-- naming the message in reply_to or message_id, under the button '(link)'. Each event once.
-- delivered and read: of the template and variant's messages, as in funnel; tap_rate_delivered:
-- the delivered messages with a tap of that button over them; tap_rate_read: the same of read.
WITH {{cohort}},
variants AS (
    SELECT message_key, max_text(variant) AS variant
    FROM exposure_facts
    WHERE message_key IS NOT NULL
    GROUP BY message_key
),
-- Read twice (the totals and the taps' join): MATERIALIZED computes it once.
messages AS MATERIALIZED (
    SELECT s.message_key, s.template, v.variant,
           CASE WHEN s.delivered_at IS NOT NULL OR s.read_at IS NOT NULL THEN 1 ELSE 0 END AS delivered,
           CASE WHEN s.read_at IS NOT NULL THEN 1 ELSE 0 END AS was_read
    FROM cohort s
    LEFT JOIN variants v ON v.message_key = s.message_key
),
totals AS (
    SELECT template, variant, SUM(delivered) AS delivered, SUM(was_read) AS was_read
    FROM messages
    GROUP BY template, variant
),
taps AS (
    SELECT event_id,
           MAX(id_key(CASE WHEN event_type = 'link.click' THEN COALESCE(reply_to, message_id) ELSE reply_to END))
               AS message_key,
           max_text(CASE WHEN event_type = 'link.click' THEN '(link)'
                         ELSE COALESCE(interaction_title, interaction_id, '(unnamed)') END) AS button,
           MAX(contact_key) AS contact_key
    FROM events
    WHERE event_type IN ('interaction.reply', 'link.click') AND date >= $from
    GROUP BY event_id
),
per_button AS (
    SELECT m.template, m.variant, t.button,
           COUNT(*) AS taps,
           COUNT(DISTINCT t.contact_key) AS tappers,
           COUNT(DISTINCT t.message_key) AS messages_tapped,
           COUNT(DISTINCT CASE WHEN m.delivered = 1 THEN t.message_key END) AS delivered_tapped,
           COUNT(DISTINCT CASE WHEN m.was_read = 1 THEN t.message_key END) AS read_tapped
    FROM taps t
    JOIN messages m ON m.message_key = t.message_key
    GROUP BY m.template, m.variant, t.button
)
SELECT p.template,
       p.variant,
       p.button,
       p.taps,
       p.tappers,
       p.messages_tapped,
       o.delivered,
       o.was_read AS "read",
       CAST(p.delivered_tapped AS DOUBLE) / NULLIF(o.delivered, 0) AS tap_rate_delivered,
       CAST(p.read_tapped AS DOUBLE) / NULLIF(o.was_read, 0) AS tap_rate_read
FROM per_button p
JOIN totals o ON (o.template IS NOT DISTINCT FROM p.template) AND (o.variant IS NOT DISTINCT FROM p.variant)
ORDER BY p.template, p.variant, p.taps DESC, p.button

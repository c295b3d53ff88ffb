-- clicks: the messages clicked, spliced in as a CTE where templates and pricing name it in
-- double braces: a button tapped (an interaction.reply naming the message in reply_to) or a
-- link followed (a link.click naming it in message_id or reply_to), each message once.
clicks AS (
    SELECT DISTINCT id_key(CASE WHEN event_type = 'link.click' THEN COALESCE(reply_to, message_id) ELSE reply_to END)
               AS message_key
    FROM events
    WHERE event_type IN ('interaction.reply', 'link.click') AND date >= $from
)

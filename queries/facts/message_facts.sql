-- message_facts over the events: one row per date and message, the columns of the message
-- rollup (src/rollup/messages.rs, whose schema() says what each means).
--
-- Reports read `message_facts` from the rollup files where every events file has them, else
-- from this view; a row per date here stands where the rollup has a row per file. Every
-- column is a MIN, MAX or "any" of the message's events, so a report that merges the rows per
-- message gets the same answer from either.
--
-- A reply (interaction.reply, message.inbound) counts for the message it names in reply_to;
-- sends and receipts for their own message_id. Billing is read from sends and the delivered
-- and read receipts, not from failures.
SELECT date,
       message_key,
       MIN(CASE WHEN is_send THEN occurred_at END) AS sent_at,
       max_text(CASE WHEN is_send THEN campaign END) AS campaign,
       max_text(CASE WHEN is_send THEN template END) AS template,
       max_text(CASE WHEN is_send THEN locale END) AS locale,
       MAX(CASE WHEN is_send THEN id_key(contact_key) END) AS contact,
       MIN(CASE WHEN event_type = 'message.delivered' THEN occurred_at END) AS delivered_at,
       MIN(CASE WHEN event_type = 'message.read' THEN occurred_at END) AS read_at,
       bool_or(event_type = 'message.failed') AS failed,
       bool_or(is_reply) AS replied,
       bool_or(is_billed AND COALESCE(billable, false)) AS billable,
       max_text(CASE WHEN is_billed THEN category END) AS category,
       max_text(CASE WHEN is_billed THEN country END) AS country,
       MAX(CASE WHEN is_billed THEN cost_micros END) AS cost_micros,
       max_text(CASE WHEN is_billed THEN json_text(attributes, 'pricing_type') END) AS pricing_type
FROM (
    SELECT date, event_type, occurred_at, campaign, template, locale, contact_key, billable, category,
           country, cost_micros, attributes,
           id_key(CASE WHEN event_type IN ('interaction.reply', 'message.inbound') THEN reply_to
                       ELSE message_id END) AS message_key,
           event_type IN ('send.accepted', 'message.sent') AS is_send,
           event_type IN ('interaction.reply', 'message.inbound') AS is_reply,
           event_type IN ('send.accepted', 'message.sent', 'message.delivered', 'message.read') AS is_billed
    FROM events
    WHERE event_type IN ('send.accepted', 'message.sent', 'message.delivered', 'message.read', 'message.failed',
                         'interaction.reply', 'message.inbound')
) message_events
WHERE message_key IS NOT NULL
GROUP BY date, message_key

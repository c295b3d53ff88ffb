-- message_facts over the events: one row per message event, with the columns of the message
-- rollup (src/rollup/messages.rs, whose schema() says what each means).
--
-- Reports read `message_facts` from the rollup files where every events file has them, else
-- from this view; an event's row here stands where the rollup has a row per message and file.
-- Every rollup column is a MIN, MAX or "any" of the message's events, and here each is the
-- event's own value where it contributes (else null), so a report that merges the rows per
-- message gets the same answer from either. The rows are not grouped per date first: every
-- report merges them per message anyway, and grouping 8 M events twice cost the reports on the
-- events (10 M events, paired: the twelve message reports took 0.79-0.90 of the time).
--
-- A reply (interaction.reply, message.inbound) counts for the message it names in reply_to;
-- sends and receipts for their own message_id. Billing is read from sends and the delivered
-- and read receipts, not from failures.
SELECT date,
       message_key,
       CASE WHEN is_send THEN occurred_at END AS sent_at,
       CASE WHEN is_send THEN campaign END AS campaign,
       CASE WHEN is_send THEN template END AS template,
       CASE WHEN is_send THEN locale END AS locale,
       CASE WHEN is_send THEN id_key(contact_key) END AS contact,
       CASE WHEN event_type = 'message.delivered' THEN occurred_at END AS delivered_at,
       CASE WHEN event_type = 'message.read' THEN occurred_at END AS read_at,
       event_type = 'message.failed' AS failed,
       is_reply AS replied,
       is_billed AND COALESCE(billable, false) AS billable,
       CASE WHEN is_billed THEN category END AS category,
       CASE WHEN is_billed THEN country END AS country,
       CASE WHEN is_billed THEN cost_micros END AS cost_micros,
       CASE WHEN is_billed THEN json_text(attributes, 'pricing_type') END AS pricing_type
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

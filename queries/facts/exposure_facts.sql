-- exposure_facts over the events: one row per exposure event, with the columns of the exposure
-- rollup (src/rollup/exposures.rs, whose schema() says what each means).
--
-- Reports read `exposure_facts` from the rollup files where every events file has them, else
-- from this view. An exposure is a send that names its experiment and variant. Every rollup
-- column is the key, a MIN or a MAX of its sends, and here each is the send's own value, so a
-- report that merges the rows (per contact, per message) gets the same answer from either. The
-- rows are not grouped per date first: every report merges them anyway, and grouping the sends
-- of 10 M events first made the experiment report over the events 1.32x slower (paired).
SELECT date,
       experiment,
       variant,
       campaign,
       id_key(contact_key) AS contact,
       id_key(message_id) AS message_key,
       occurred_at AS exposed_at,
       country,
       template,
       locale
FROM events
WHERE event_type IN ('send.accepted', 'message.sent')
  AND experiment IS NOT NULL AND variant IS NOT NULL AND contact_key IS NOT NULL

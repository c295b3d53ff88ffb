-- exposure_facts over the events: one row per date and exposure, the columns of the exposure
-- rollup (src/rollup/exposures.rs, whose schema() says what each means).
--
-- Reports read `exposure_facts` from the rollup files where every events file has them, else
-- from this view. An exposure is a send that names its experiment and variant; the row is
-- keyed by everything the experiment report reads of it but its time, whose first value it
-- keeps, so merging rows gives what reading the sends gives.
SELECT date,
       experiment,
       variant,
       campaign,
       id_key(contact_key) AS contact,
       id_key(message_id) AS message_key,
       MIN(occurred_at) AS exposed_at
FROM events
WHERE event_type IN ('send.accepted', 'message.sent')
  AND experiment IS NOT NULL AND variant IS NOT NULL AND contact_key IS NOT NULL
GROUP BY date, experiment, variant, campaign, id_key(contact_key), id_key(message_id)

-- contact_event_facts over the events: one row per date and conversion or opt-out, the columns
-- of the contact-event rollup (src/rollup/contact_events.rs, whose schema() says what each
-- means).
--
-- Reports read `contact_event_facts` from the rollup files where every events file has them,
-- else from this view. The row is keyed by the event's type and id, so merging rows (MIN, MAX)
-- counts an event stored twice once.
SELECT date,
       event_type,
       id_key(event_id) AS event_key,
       MAX(id_key(contact_key)) AS contact,
       MIN(occurred_at) AS occurred_at,
       MAX(COALESCE(revenue_micros, 0)) AS revenue_micros
FROM events
WHERE event_type IN ('conversion', 'consent.opt_out') AND contact_key IS NOT NULL
GROUP BY date, event_type, id_key(event_id)

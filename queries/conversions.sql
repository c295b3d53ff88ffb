-- conversions: the cohort's messages whose contact converted within $window_s seconds after the
-- send, each with the first such conversion's time. Spliced in as a CTE where a report names it
-- in double braces, after its `cohort_once` (each message's message_key, sent_at and contact).
-- The conversions come from contact_event_facts (their contacts already id_keys); an event
-- stored twice has two rows there, which change no first time.
conversions AS (
    SELECT s.message_key, MIN(c.occurred_at) AS converted_at
    FROM cohort_once s
    JOIN contact_event_facts c ON c.contact = s.contact
    WHERE c.event_type = 'conversion'
      AND c.date >= $from
      AND c.occurred_at >= s.sent_at
      AND date_part('epoch', c.occurred_at) <= date_part('epoch', s.sent_at) + $window_s
    GROUP BY s.message_key
)

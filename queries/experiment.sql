-- experiment: per-variant counts behind the A/B statistics (computed in Rust from these).
--
-- The unit is the contact. exposures: distinct contacts sent a message of the experiment
-- (first exposure on a date in [$from, $to]); a contact is in the variant of its first
-- exposure. conversions: exposed contacts with a conversion within $window_s seconds after
-- their first exposure. revenue_sum / revenue_sq_sum: per-contact revenue in that window
-- (each conversion event once), for revenue per exposure and its Welch t-test.
-- reads / replies: exposed contacts with a message of the experiment read / replied to, for
-- reports that use those as the conversion metric.
-- Contacts and messages are grouped and joined as id_key() of their ids: numbers, which
-- DataFusion groups and joins faster than 64-character strings.
-- exposure_rows is read twice (exposed, experiment_messages): MATERIALIZED reads the exposure
-- facts once (src/analytics/materialize.rs; 10 million events, paired runs: 5-14% less time).
WITH exposure_rows AS MATERIALIZED (
    SELECT experiment, variant, contact, exposed_at, message_key
    FROM exposure_facts
    WHERE ($experiment = '' OR experiment = $experiment)
      AND ($campaign = '' OR campaign = $campaign)
),
-- Not DISTINCT: the facts have about one row per message already, and engaged_contacts takes
-- the largest read and reply flag per contact, which a message met twice does not change.
experiment_messages AS (
    SELECT experiment, contact, message_key FROM exposure_rows WHERE message_key IS NOT NULL
),
-- The reads and replies of messages: a message_facts row has a read time where its file (or
-- date) has a read of the message, and `replied` where it has a reply to it.
engagement AS (
    SELECT message_key AS target,
           CASE WHEN read_at IS NOT NULL THEN 1 ELSE 0 END AS was_read,
           CASE WHEN replied THEN 1 ELSE 0 END AS replied
    FROM message_facts
    WHERE (read_at IS NOT NULL OR replied) AND date >= $from
),
-- A contact's first exposure and its variant in one pass (the smallest variant among
-- exposures at the same instant): joining the first exposure back to its rows read the
-- exposures once more, 1.44 s instead of 1.10 at 3 million events. earliest_text is
-- first_value(variant ORDER BY exposed_at, variant) without DataFusion's accumulator per
-- contact for text (src/analytics/earliest_text.rs).
exposed AS (
    SELECT experiment, contact, MIN(exposed_at) AS exposed_at,
           earliest_text(variant, exposed_at) AS variant
    FROM exposure_rows
    GROUP BY experiment, contact
    HAVING CAST(MIN(exposed_at) AS DATE) >= CAST($from AS DATE)
       AND CAST(MIN(exposed_at) AS DATE) <= CAST($to AS DATE)
),
engaged_contacts AS (
    SELECT m.experiment, m.contact, MAX(g.was_read) AS was_read, MAX(g.replied) AS replied
    FROM experiment_messages m
    JOIN engagement g ON g.target = m.message_key
    GROUP BY m.experiment, m.contact
),
conversion_events AS (
    SELECT event_id, id_key(MAX(contact_key)) AS contact, MIN(occurred_at) AS occurred_at,
           MAX(COALESCE(revenue_micros, 0)) AS revenue_micros
    FROM events
    WHERE event_type = 'conversion' AND contact_key IS NOT NULL AND date >= $from
    GROUP BY event_id
),
per_contact AS (
    SELECT x.experiment, x.variant, x.contact,
           COUNT(c.event_id) AS n_conversions,
           COALESCE(SUM(c.revenue_micros), 0) AS revenue_micros
    FROM exposed x
    LEFT JOIN conversion_events c
      ON c.contact = x.contact
     AND c.occurred_at >= x.exposed_at
     AND date_part('epoch', c.occurred_at) <= date_part('epoch', x.exposed_at) + $window_s
    GROUP BY x.experiment, x.variant, x.contact
)
SELECT p.experiment,
       p.variant,
       COUNT(*) AS exposures,
       SUM(CASE WHEN n_conversions > 0 THEN 1 ELSE 0 END) AS conversions,
       SUM(COALESCE(g.was_read, 0)) AS reads,
       SUM(COALESCE(g.replied, 0)) AS replies,
       SUM(CAST(revenue_micros AS DOUBLE) / 1000000) AS revenue_sum,
       SUM((CAST(revenue_micros AS DOUBLE) / 1000000) * (CAST(revenue_micros AS DOUBLE) / 1000000)) AS revenue_sq_sum
FROM per_contact p
LEFT JOIN engaged_contacts g ON g.experiment = p.experiment AND g.contact = p.contact
GROUP BY p.experiment, p.variant
ORDER BY p.experiment, p.variant


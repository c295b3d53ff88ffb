-- experiment as one query over the events: what a team without convoscope computes for an A/B
-- test, and the baseline the report is held to (scripts/bench_reports.py): per variant, the
-- contacts first exposed, those converted within the window, their reads and replies, and
-- revenue's sum and sum of squares. The report computes far more from the same files (every
-- metric of the menu with its pre-exposure period, per slice and country); the benchmark
-- compares the columns both have.
WITH exposure_rows AS MATERIALIZED (
    SELECT experiment, variant, id_key(contact_key) AS contact, occurred_at AS exposed_at,
           id_key(message_id) AS message_key
    FROM events
    WHERE event_type IN ('send.accepted', 'message.sent')
      AND experiment IS NOT NULL AND variant IS NOT NULL AND contact_key IS NOT NULL
      AND ($experiment = '' OR experiment = $experiment)
      AND ($campaign = '' OR campaign = $campaign)
),
experiment_messages AS (
    SELECT DISTINCT experiment, contact, message_key FROM exposure_rows WHERE message_key IS NOT NULL
),
-- Reads and replies in one join of the experiment's messages: DataFusion computes a CTE once
-- per reference, and separate read and reply CTEs read experiment_messages (and so the
-- exposures) twice: 17% slower at 3 million events.
engagement AS (
    SELECT id_key(message_id) AS target, 1 AS was_read, 0 AS replied
    FROM events
    WHERE event_type = 'message.read' AND message_id IS NOT NULL AND date >= $from
    UNION ALL
    SELECT id_key(reply_to) AS target, 0 AS was_read, 1 AS replied
    FROM events
    WHERE event_type IN ('interaction.reply', 'message.inbound') AND reply_to IS NOT NULL AND date >= $from
),
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

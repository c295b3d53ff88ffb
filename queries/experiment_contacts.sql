-- experiment_contacts: the experiment report's rows per exposed contact (`per_contact`), as
-- common table expressions that queries/experiment.sql splices in where it names
-- experiment_contacts in double braces. Compaction keeps their result, with every metric and
-- both slice columns, as a table the report reads instead while it covers the store
-- (src/analytics/reports/experiment/kept.rs).
--
-- A row: the contact's experiment, the contact (its key), the variant of its first exposure,
-- `multi`, `exposed_at`, its country, locale and template, and every metric after exposure and
-- before it (pre_*).
--
-- The contact's country, locale and template are those its exposures name (the experiment's
-- sends), so the experiment's messages are merged only for a metric read from them.
-- Not materialized: `exposed` reads it, and experiment_messages again where messages are merged
-- (holding the sends in memory cost the report on the events alone 7%, paired).
WITH exposure_rows AS (
    SELECT experiment, variant, contact, exposed_at, message_key, country, locale, template
    FROM exposure_facts
    WHERE ($experiment = '' OR experiment = $experiment)
      AND ($campaign = '' OR campaign = $campaign)
),
-- A contact's first exposure and its variant in one pass (earliest_text is the variant of the
-- earliest exposure without an accumulator per contact for text:
-- src/analytics/earliest_text.rs); it met more than one variant when its smallest and largest
-- variant differ. Locale and template are null unless the breakdown is by them ($by '*': both,
-- for the kept table), so without one the plan drops their aggregates.
exposed AS MATERIALIZED (
    SELECT experiment, contact, MIN(exposed_at) AS exposed_at,
           earliest_text(variant, exposed_at) AS variant,
           min_text(variant) <> max_text(variant) AS multi,
           max_text(country) AS country,
           CASE WHEN $by IN ('locale', '*') THEN max_text(locale) END AS locale,
           CASE WHEN $by IN ('template', '*') THEN max_text(template) END AS template
    FROM exposure_rows
    GROUP BY experiment, contact
    HAVING CAST(MIN(exposed_at) AS DATE) >= CAST($from AS DATE)
       AND CAST(MIN(exposed_at) AS DATE) <= CAST($to AS DATE)
),
-- Messages with a failure 131048 (blocked), when blocked is measured.
blocked_messages AS MATERIALIZED (
    SELECT DISTINCT id_key(message_id) AS message_key
    FROM events
    WHERE event_type = 'message.failed' AND error_code = 131048 AND date >= $lookback_from
      AND strpos($metrics, ',blocked,') > 0
),
-- The messages since the lookback began that a run reads, their rows merged: every message when
-- a metric read from every message is measured (what the variant did, and the same before), else
-- the blocked ones when blocked is (every other message measure is then 0 whatever a message
-- did), else none.
messages AS (
    SELECT message_key,
           MIN(sent_at) AS sent_at,
           MAX(contact) AS contact,
           CASE WHEN MIN(delivered_at) IS NOT NULL THEN 1 ELSE 0 END AS delivered,
           CASE WHEN MIN(read_at) IS NOT NULL THEN 1 ELSE 0 END AS was_read,
           CASE WHEN bool_or(replied) THEN 1 ELSE 0 END AS replied,
           CASE WHEN bool_or(failed) THEN 1 ELSE 0 END AS failed,
           bool_or(billable) AS billable,
           max_text(category) AS category,
           max_text(country) AS country,
           MAX(cost_micros) AS cost_micros
    FROM message_facts
    WHERE date >= $lookback_from
      AND (strpos($metrics, ',read,') > 0 OR strpos($metrics, ',replied,') > 0
           OR strpos($metrics, ',failed,') > 0 OR strpos($metrics, ',cost,') > 0
           OR strpos($metrics, ',revenue_per_delivered,') > 0
           OR message_key IN (SELECT message_key FROM blocked_messages))
    GROUP BY message_key
),
-- The experiment each message belongs to, for the experiment's own messages.
experiment_messages AS (
    SELECT DISTINCT experiment, message_key FROM exposure_rows WHERE message_key IS NOT NULL
),
-- A metric that reads every message is computed only when the run can show it ($metrics: the
-- experiments' goals and guardrails): otherwise it is the constant 0, and the plan drops the
-- columns, aggregates and joins only it reads (the rate card's, for cost).
priced AS (
    SELECT m.message_key, m.sent_at, m.contact,
           CASE WHEN strpos($metrics, ',revenue_per_delivered,') > 0 THEN m.delivered ELSE 0 END AS delivered,
           CASE WHEN strpos($metrics, ',read,') > 0 THEN m.was_read ELSE 0 END AS was_read,
           CASE WHEN strpos($metrics, ',replied,') > 0 THEN m.replied ELSE 0 END AS replied,
           CASE WHEN strpos($metrics, ',failed,') > 0 THEN m.failed ELSE 0 END AS failed,
           e.experiment AS of_experiment,
           CASE WHEN b.message_key IS NULL THEN 0 ELSE 1 END AS blocked,
           CASE WHEN strpos($metrics, ',cost,') > 0
                THEN COALESCE(CAST(m.cost_micros AS DOUBLE) / 1000000,
                              CASE WHEN m.billable THEN COALESCE(r.price, d.price, 0) ELSE 0 END)
                ELSE 0 END AS cost
    FROM messages m
    LEFT JOIN rate_card r ON strpos($metrics, ',cost,') > 0 AND r.category = m.category AND r.country = m.country
    LEFT JOIN rate_card d ON strpos($metrics, ',cost,') > 0 AND d.category = m.category AND d.country = '*'
    LEFT JOIN blocked_messages b ON b.message_key = m.message_key
    LEFT JOIN experiment_messages e ON e.message_key = m.message_key
),
-- Per exposed contact with a merged message, in one join: the experiment's own messages (what
-- the variant did) and the messages sent to it in the lookback (the same measures before).
-- Without a metric read from every message these are the few contacts with a blocked message.
message_outcomes AS (
    SELECT experiment, contact,
           MAX(CASE WHEN post THEN was_read ELSE 0 END) AS was_read,
           MAX(CASE WHEN post THEN replied ELSE 0 END) AS replied,
           MAX(CASE WHEN post THEN failed ELSE 0 END) AS failed,
           MAX(CASE WHEN post THEN blocked ELSE 0 END) AS blocked,
           SUM(CASE WHEN post THEN delivered ELSE 0 END) AS delivered,
           SUM(CASE WHEN post THEN cost ELSE 0 END) AS cost,
           MAX(CASE WHEN pre THEN was_read ELSE 0 END) AS pre_read,
           MAX(CASE WHEN pre THEN replied ELSE 0 END) AS pre_replied,
           MAX(CASE WHEN pre THEN failed ELSE 0 END) AS pre_failed,
           MAX(CASE WHEN pre THEN blocked ELSE 0 END) AS pre_blocked,
           SUM(CASE WHEN pre THEN delivered ELSE 0 END) AS pre_delivered,
           SUM(CASE WHEN pre THEN cost ELSE 0 END) AS pre_cost
    FROM (
        SELECT x.experiment, x.contact,
               p.was_read, p.replied, p.failed, p.blocked, p.delivered, p.cost,
               COALESCE(p.of_experiment = x.experiment, false) AS post,
               COALESCE(p.sent_at < x.exposed_at
                 AND date_part('epoch', p.sent_at) >= date_part('epoch', x.exposed_at) - $lookback_s, false) AS pre
        FROM exposed x
        JOIN priced p ON p.contact = x.contact
          AND (p.of_experiment = x.experiment
               OR (p.sent_at < x.exposed_at
                   AND date_part('epoch', p.sent_at) >= date_part('epoch', x.exposed_at) - $lookback_s))
    ) joined
    GROUP BY experiment, contact
),
-- Conversions and opt-outs since the lookback began, each event once (its rows merged).
contact_events AS (
    SELECT MAX(contact) AS contact, MIN(occurred_at) AS occurred_at,
           CASE WHEN event_type = 'conversion' THEN 1 ELSE 0 END AS is_conversion,
           CAST(MAX(revenue_micros) AS DOUBLE) / 1000000 AS revenue
    FROM contact_event_facts
    WHERE date >= $lookback_from
    GROUP BY event_type, event_key
),
-- A row per contact with a conversion or an opt-out around its exposure: few. Materialized:
-- per_contact joins it, and the revenue caps (queries/experiment.sql) read it for the amounts
-- instead of every exposed contact's row.
outcomes AS MATERIALIZED (
    SELECT x.experiment, x.contact, x.multi,
           SUM(CASE WHEN c.is_conversion = 1 AND c.occurred_at >= x.exposed_at THEN 1 ELSE 0 END) AS n_post,
           SUM(CASE WHEN c.is_conversion = 1 AND c.occurred_at >= x.exposed_at THEN c.revenue ELSE 0 END) AS revenue,
           SUM(CASE WHEN c.is_conversion = 1 AND c.occurred_at < x.exposed_at THEN 1 ELSE 0 END) AS n_pre,
           SUM(CASE WHEN c.is_conversion = 1 AND c.occurred_at < x.exposed_at THEN c.revenue ELSE 0 END) AS pre_revenue,
           MAX(CASE WHEN c.is_conversion = 0 AND c.occurred_at >= x.exposed_at THEN 1 ELSE 0 END) AS opted_out,
           MAX(CASE WHEN c.is_conversion = 0 AND c.occurred_at < x.exposed_at THEN 1 ELSE 0 END) AS pre_opted_out
    FROM exposed x
    JOIN contact_events c ON c.contact = x.contact
    WHERE date_part('epoch', c.occurred_at) >= date_part('epoch', x.exposed_at) - $lookback_s
      AND date_part('epoch', c.occurred_at) <= date_part('epoch', x.exposed_at) + $window_s
    GROUP BY x.experiment, x.contact, x.multi
),
-- Every exposed contact with its measures. Not materialized: `capped` reads it once.
per_contact AS (
    SELECT x.experiment, x.contact, x.variant, x.multi, x.exposed_at,
           COALESCE(x.country, '(none)') AS country,
           x.locale, x.template,
           CASE WHEN COALESCE(c.n_post, 0) > 0 THEN 1 ELSE 0 END AS converted,
           CASE WHEN COALESCE(c.n_pre, 0) > 0 THEN 1 ELSE 0 END AS pre_converted,
           COALESCE(c.revenue, 0) AS revenue, COALESCE(c.pre_revenue, 0) AS pre_revenue,
           -- The metrics read from messages (null where the contact has no merged message), 0
           -- where unmeasured here as well, so the plan drops their aggregates per contact and
           -- their columns from the join.
           CASE WHEN strpos($metrics, ',read,') > 0 THEN COALESCE(p.was_read, 0) ELSE 0 END AS was_read,
           CASE WHEN strpos($metrics, ',read,') > 0 THEN COALESCE(p.pre_read, 0) ELSE 0 END AS pre_read,
           CASE WHEN strpos($metrics, ',replied,') > 0 THEN COALESCE(p.replied, 0) ELSE 0 END AS replied,
           CASE WHEN strpos($metrics, ',replied,') > 0 THEN COALESCE(p.pre_replied, 0) ELSE 0 END AS pre_replied,
           COALESCE(c.opted_out, 0) AS opted_out, COALESCE(c.pre_opted_out, 0) AS pre_opted_out,
           CASE WHEN strpos($metrics, ',failed,') > 0 THEN COALESCE(p.failed, 0) ELSE 0 END AS failed,
           CASE WHEN strpos($metrics, ',failed,') > 0 THEN COALESCE(p.pre_failed, 0) ELSE 0 END AS pre_failed,
           CASE WHEN strpos($metrics, ',blocked,') > 0 THEN COALESCE(p.blocked, 0) ELSE 0 END AS blocked,
           CASE WHEN strpos($metrics, ',blocked,') > 0 THEN COALESCE(p.pre_blocked, 0) ELSE 0 END AS pre_blocked,
           CASE WHEN strpos($metrics, ',cost,') > 0 THEN COALESCE(p.cost, 0) ELSE 0 END AS cost,
           CASE WHEN strpos($metrics, ',cost,') > 0 THEN COALESCE(p.pre_cost, 0) ELSE 0 END AS pre_cost,
           CASE WHEN strpos($metrics, ',revenue_per_delivered,') > 0 THEN COALESCE(p.delivered, 0) ELSE 0 END AS delivered,
           CASE WHEN strpos($metrics, ',revenue_per_delivered,') > 0 THEN COALESCE(p.pre_delivered, 0) ELSE 0 END AS pre_delivered
    FROM exposed x
    LEFT JOIN message_outcomes p ON p.experiment = x.experiment AND p.contact = x.contact
    LEFT JOIN outcomes c ON c.experiment = x.experiment AND c.contact = x.contact
)

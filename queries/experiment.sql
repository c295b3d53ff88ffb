-- experiment: per variant, slice and country, the sums behind every statistic of the experiment
-- report (computed in Rust from these: src/analytics/reports/experiment/).
--
-- The unit is the contact, in the variant of its first exposure (the first send of the
-- experiment, on a date in [$from, $to]). A contact exposed to more than one variant is kept
-- in its first variant's rows with `multi` true: the report counts and excludes them.
--
-- Every metric of the menu (src/experiments/analysis.rs) is summed per group as y (after
-- exposure) and x (the same metric over the $lookback_s seconds before the first exposure, for
-- CUPED): <metric>_y, _y2, _x, _x2, _xy. Sums add over groups, so the report can merge slices
-- into "other", strata into one, and slices into "the rest" without another query.
--
-- - converted: a conversion within $window_s seconds after the first exposure (pre: in the
--   lookback); revenue: their revenue (each conversion event once), capped at the
--   experiment's $cap_q quantile of the contacts with revenue (pre: of the pre-period's);
-- - read, replied, failed, blocked (a failure with 131048), cost (the message's own cost, else
--   the rate card's price when billable), delivered (messages): over the experiment's
--   messages to the contact (pre: over messages sent to it in the lookback);
-- - opted_out: a consent.opt_out within the window (pre: in the lookback).
--
-- Of the metrics read from messages (read, replied, failed, blocked, cost, and delivered for
-- revenue per delivered message), those not in $metrics are 0: no experiment shows them (read
-- from the kept table, they are what they are: the report shows only those in $metrics).
-- Without one that reads every message, only the blocked messages are merged (for blocked), or
-- none.
--
-- conversions, revenue_sum and revenue_sq_sum (uncapped) keep the meaning they had before the
-- other metrics existed; reads and replies too, when read and replied are measured. `slice` is
-- the contact's country, locale or template ($by; those the experiment's sends to it name), ''
-- without a breakdown; `country` is the stratum of post-stratification.
-- Contacts and messages are id_key() of their ids: numbers join faster than strings.
--
-- per_contact comes from queries/experiment_contacts.sql, computed, or from the table compaction
-- keeps of it (queries/experiment_kept.sql).
{{experiment_contacts}},
-- The caps: the $cap_q quantile of the amounts contacts have, zeros left out (most contacts buy
-- nothing; with them, a 99.9th percentile under 0.1% of buyers would cap every order at 0).
-- They read `outcomes`, the pieces' rows of the contacts with a conversion or opt-out (or at
-- least those with revenue), not every exposed contact's.
caps AS (
    SELECT experiment,
           percentile_cont($cap_q) WITHIN GROUP (ORDER BY revenue) FILTER (WHERE revenue > 0) AS cap,
           percentile_cont($cap_q) WITHIN GROUP (ORDER BY pre_revenue) FILTER (WHERE pre_revenue > 0) AS pre_cap
    FROM outcomes
    WHERE NOT multi AND (revenue > 0 OR pre_revenue > 0)
    GROUP BY experiment
),
-- Contacts met by more than one variant take no part in the caps, nor are they capped.
capped AS (
    SELECT p.*,
           CASE WHEN $by = '' THEN ''
                ELSE COALESCE(CASE $by WHEN 'country' THEN p.country WHEN 'locale' THEN p.locale
                                       WHEN 'template' THEN p.template END, '(none)') END AS slice,
           CASE WHEN NOT p.multi AND p.revenue > k.cap THEN COALESCE(k.cap, 0) ELSE p.revenue END AS rev,
           CASE WHEN NOT p.multi AND p.pre_revenue > k.pre_cap THEN COALESCE(k.pre_cap, 0) ELSE p.pre_revenue END AS pre_rev
    FROM per_contact p
    LEFT JOIN caps k ON k.experiment = p.experiment
),
stopped AS (
    SELECT experiment, variant, MIN(occurred_at) AS stopped_at
    FROM events
    WHERE event_type = 'experiment.variant_stopped' AND experiment IS NOT NULL AND variant IS NOT NULL
    GROUP BY experiment, variant
),
sums AS (
    SELECT experiment, variant, multi, slice, country,
           COUNT(*) AS exposures,
           MIN(exposed_at) AS first_exposed_at,
           SUM(converted) AS conversions,
           SUM(was_read) AS reads,
           SUM(replied) AS replies,
           SUM(revenue) AS revenue_sum,
           SUM(revenue * revenue) AS revenue_sq_sum,
           SUM(converted) AS converted_y, SUM(converted) AS converted_y2, SUM(pre_converted) AS converted_x,
           SUM(pre_converted) AS converted_x2, SUM(converted * pre_converted) AS converted_xy,
           SUM(replied) AS replied_y, SUM(replied) AS replied_y2, SUM(pre_replied) AS replied_x,
           SUM(pre_replied) AS replied_x2, SUM(replied * pre_replied) AS replied_xy,
           SUM(was_read) AS read_y, SUM(was_read) AS read_y2, SUM(pre_read) AS read_x,
           SUM(pre_read) AS read_x2, SUM(was_read * pre_read) AS read_xy,
           SUM(rev) AS revenue_y, SUM(rev * rev) AS revenue_y2, SUM(pre_rev) AS revenue_x,
           SUM(pre_rev * pre_rev) AS revenue_x2, SUM(rev * pre_rev) AS revenue_xy,
           SUM(opted_out) AS opted_out_y, SUM(opted_out) AS opted_out_y2, SUM(pre_opted_out) AS opted_out_x,
           SUM(pre_opted_out) AS opted_out_x2, SUM(opted_out * pre_opted_out) AS opted_out_xy,
           SUM(failed) AS failed_y, SUM(failed) AS failed_y2, SUM(pre_failed) AS failed_x,
           SUM(pre_failed) AS failed_x2, SUM(failed * pre_failed) AS failed_xy,
           SUM(blocked) AS blocked_y, SUM(blocked) AS blocked_y2, SUM(pre_blocked) AS blocked_x,
           SUM(pre_blocked) AS blocked_x2, SUM(blocked * pre_blocked) AS blocked_xy,
           SUM(cost) AS cost_y, SUM(cost * cost) AS cost_y2, SUM(pre_cost) AS cost_x,
           SUM(pre_cost * pre_cost) AS cost_x2, SUM(cost * pre_cost) AS cost_xy,
           SUM(delivered) AS delivered_y, SUM(delivered * delivered) AS delivered_y2,
           SUM(rev * delivered) AS revenue_delivered
    FROM capped
    GROUP BY experiment, variant, multi, slice, country
)
SELECT s.*, t.stopped_at
FROM sums s
LEFT JOIN stopped t ON t.experiment = s.experiment AND t.variant = s.variant
-- Unsorted: the report sorts these few rows by their key. Without a breakdown `slice` is a
-- constant, and DataFusion's plan check (SanityCheckPlan) rejects a sort by it after this join
-- on some small stores.

-- experiment: per-variant counts behind the A/B statistics (computed in Rust from these).
--
-- The unit is the contact. exposures: distinct contacts sent a message of the experiment
-- (first exposure on a date in [$from, $to]); a contact is in the variant of its first
-- exposure. conversions: exposed contacts with a conversion within $window_s seconds after
-- their first exposure. revenue_sum / revenue_sq_sum: per-contact revenue in that window
-- (each conversion event once), for revenue per exposure and its Welch t-test.
-- reads / replies: exposed contacts with a message of the experiment read / replied to, for
-- reports that use those as the conversion metric.
-- Contacts and messages are grouped and joined as id_key() of their ids (src/analytics/id_key.rs):
-- numbers, which DataFusion groups and joins faster than 64-character strings.
-- exposure_rows is read twice (exposed, experiment_messages): MATERIALIZED reads the sends once
-- (src/analytics/materialize.rs; 10 million events, paired runs: 5-14% less time).
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
{{experiment_totals}}

-- experiment, from the exposure and message rollups: the same report as ../experiment.sql,
-- whose header says what each column means. Conversions are still matched against the
-- conversion events.
-- Read twice (exposed, experiment_messages): computed once.
WITH exposure_rows AS MATERIALIZED (
    SELECT experiment, variant, contact, exposed_at, message_key
    FROM exposures
    WHERE ($experiment = '' OR experiment = $experiment)
      AND ($campaign = '' OR campaign = $campaign)
),
-- Not DISTINCT, as the events form is: the rollup has about one row per message already, and
-- engaged_contacts takes the largest read and reply flag per contact, which a message met
-- twice does not change.
experiment_messages AS (
    SELECT experiment, contact, message_key FROM exposure_rows WHERE message_key IS NOT NULL
),
-- A message rollup row has a read time where its file (of its date) has a read of the message,
-- and `replied` where the file has a reply to it: the read and reply events the events form
-- reads.
engagement AS (
    SELECT message_key AS target,
           CASE WHEN read_at IS NOT NULL THEN 1 ELSE 0 END AS was_read,
           CASE WHEN replied THEN 1 ELSE 0 END AS replied
    FROM messages
    WHERE (read_at IS NOT NULL OR replied) AND date >= $from
),
{{experiment_totals}}

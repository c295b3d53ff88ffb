-- experiment as one query over the events, the form the report had before it read the facts
-- tables: DuckDB's formulation over plain events (scripts/bench_reports.py), the query a
-- team without convoscope would run. Its pieces in double braces: cohort, the cohort over the
-- events (cohort.sql here); report_cte:X, the CTE X of the report's own SQL (queries/experiment.sql)
-- where the two forms agree; report_from:X, the rest of the report from its CTE X (SELECT:
-- its final SELECT).
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
{{report_from:exposed}}

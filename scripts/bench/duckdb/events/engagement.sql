-- engagement as one query over the events, the form the report had before it read the facts
-- tables: DuckDB's formulation over plain events (scripts/bench_reports.py), the query a
-- team without convoscope would run. Its pieces in double braces: cohort, the cohort over the
-- events (cohort.sql here); report_cte:X, the CTE X of the report's own SQL (queries/engagement.sql)
-- where the two forms agree; report_from:X, the rest of the report from its CTE X (SELECT:
-- its final SELECT).
WITH {{cohort}},
-- Read twice (the per-message counts and the csat contacts): MATERIALIZED computes it once.
cohort_once AS MATERIALIZED (
    SELECT message_key, locale, contact FROM cohort
),
reads AS (
    SELECT DISTINCT id_key(message_id) AS message_key FROM events WHERE event_type = 'message.read' AND date >= $from
),
replies AS (
    SELECT DISTINCT id_key(reply_to) AS message_key
    FROM events
    WHERE event_type IN ('interaction.reply', 'message.inbound') AND reply_to IS NOT NULL AND date >= $from
),
{{report_cte:csat}},
{{report_cte:csat_by_contact}},
-- One pass over the cohort per (locale, contact), from which both the locale's counts and its
-- contacts' CSAT are read: DataFusion computes a CTE once per reference, and reading the
-- cohort twice (once for counts, once for the locale's contacts) cost 18% at 3 million events.
-- Each contact's csat counts once per locale it was sent a message in: the pairs of locale
-- and contact are taken only for contacts with a score (the csat side first, as DataFusion
-- builds its hash table from the left input), not for every contact of the cohort.
{{report_cte:csat_pairs}},
-- Messages and csat pairs unioned and summed per locale rather than joined on it, so a null
-- locale is one row like any other. The form before grouped the cohort by locale and contact
-- (1.9 million groups at 10 million events) to join each contact's csat once: 26% less time,
-- paired runs; DuckDB's 15% less.
per_locale AS (
    SELECT locale,
           SUM(sent) AS sent,
           SUM(was_read) AS was_read,
           SUM(replied) AS replied,
           SUM(score_sum) / SUM(scores) AS csat
    FROM (
        SELECT s.locale, 1 AS sent,
               CASE WHEN r.message_key IS NULL THEN 0 ELSE 1 END AS was_read,
               CASE WHEN p.message_key IS NULL THEN 0 ELSE 1 END AS replied,
               CAST(NULL AS DOUBLE) AS score_sum, CAST(NULL AS BIGINT) AS scores
        -- Cohort last (RIGHT JOINs): DataFusion builds its hash tables from the left inputs.
        FROM replies p
        RIGHT JOIN (reads r RIGHT JOIN cohort_once s ON r.message_key = s.message_key)
          ON p.message_key = s.message_key
        UNION ALL
        SELECT locale, 0, 0, 0, score_sum, scores
        FROM csat_pairs
    ) parts
    GROUP BY locale
)
{{report_from:SELECT}}

-- retention: weekly cohorts of contacts by their first send, and the share of each that replied
-- or converted in each week after.
--
-- A contact's first send: its earliest message of the cohort (first sent in [$from, $to]); its
-- cohort week: the ISO week (from Monday) of that send. It is active in week N when it sent an
-- interaction.reply or message.inbound, or converted, at or after its first send, in the
-- N-th calendar week after its cohort week (week 0: the same week). The report has a row for
-- every cohort and every week from 0 to the last with activity that had begun by the store's
-- last reply or conversion; `complete` is false while the week has not ended, so its share is
-- not yet final.
WITH {{cohort}},
-- Read twice (the cohort sizes and the activity join): MATERIALIZED computes it once.
cohorts AS MATERIALIZED (
    SELECT contact, MIN(sent_at) AS first_sent, CAST(date_trunc('week', MIN(sent_at)) AS DATE) AS cohort_week
    FROM cohort
    WHERE contact IS NOT NULL
    GROUP BY contact
),
activity AS MATERIALIZED (
    SELECT id_key(contact_key) AS contact, occurred_at
    FROM events
    WHERE event_type IN ('interaction.reply', 'message.inbound', 'conversion')
      AND contact_key IS NOT NULL AND date >= $from
),
active AS (
    SELECT DISTINCT c.cohort_week, c.contact,
           CAST((CAST(date_trunc('week', a.occurred_at) AS DATE) - c.cohort_week) / 7 AS BIGINT) AS week
    FROM cohorts c
    JOIN activity a ON a.contact = c.contact
    WHERE a.occurred_at >= c.first_sent
),
sizes AS (
    SELECT cohort_week, COUNT(*) AS contacts FROM cohorts GROUP BY cohort_week
),
counts AS (
    SELECT cohort_week, week, COUNT(*) AS active FROM active GROUP BY cohort_week, week
),
last_activity AS (
    SELECT CAST(MAX(occurred_at) AS DATE) AS day FROM activity
)
-- Each cohort with the weeks it was active in (a cohort never active: one row, week null);
-- the report adds the weeks between with 0 active, and the share
-- (src/analytics/reports/retention.rs).
SELECT s.cohort_week, n.week, s.contacts, COALESCE(n.active, 0) AS active, l.day AS last_activity
FROM sizes s
CROSS JOIN last_activity l
LEFT JOIN counts n ON n.cohort_week = s.cohort_week
ORDER BY s.cohort_week, n.week

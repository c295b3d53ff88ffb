-- retention: weekly cohorts of contacts by their first send, and the share of each that replied
-- or converted in each week after.
--
-- A contact's first send: its earliest message of the cohort (first sent in [$from, $to]); its
-- cohort week: the ISO week (from Monday) of that send. It is active in week N when it sent an
-- interaction.reply or message.inbound, or converted, at or after its first send, in the
-- N-th calendar week after its cohort week (week 0: the same week). A row for every cohort and
-- every week that has begun by the store's last reply or conversion; `complete` is false while
-- the week has not ended, so its share is not yet final.
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
-- Every week from 0 to the last with activity, those without any included.
last_week AS (
    SELECT MAX(week) AS n FROM active
),
weeks AS (
    SELECT unnest(range(0, n + 1)) AS week FROM last_week
),
last_activity AS (
    SELECT MAX(occurred_at) AS at FROM activity
)
SELECT s.cohort_week,
       w.week,
       s.contacts,
       COALESCE(n.active, 0) AS active,
       CAST(COALESCE(n.active, 0) AS DOUBLE) / s.contacts AS share,
       date_part('epoch', CAST(s.cohort_week AS TIMESTAMP)) + (w.week + 1) * 604800 <= date_part('epoch', now())
           AS complete
FROM sizes s
CROSS JOIN weeks w
CROSS JOIN last_activity l
LEFT JOIN counts n ON n.cohort_week = s.cohort_week AND n.week = w.week
WHERE date_part('epoch', CAST(s.cohort_week AS TIMESTAMP)) + w.week * 604800 <= date_part('epoch', l.at)
ORDER BY s.cohort_week, w.week

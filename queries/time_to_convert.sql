-- time_to_convert: how long after the send people read, reply and convert, per campaign.
--
-- Cohort as in funnel. Per message of the cohort, the seconds from its send to: its first read
-- receipt (`read`); the first interaction.reply or message.inbound naming it in reply_to
-- (`reply`); the contact's first conversion within $window_s seconds after the send
-- (`conversion`). A receipt stamped before the send (the provider's clock against the
-- sender's) counts as 0 seconds.
-- One row per campaign and step: how many messages got there, exact percentiles, and how many
-- within each bucket (the lower bound included).
WITH {{cohort}},
-- Read twice (the conversions and the times): MATERIALIZED computes it once.
cohort_once AS MATERIALIZED (
    SELECT message_key, sent_at, contact, campaign, read_at FROM cohort
),
replies AS (
    SELECT id_key(reply_to) AS message_key, MIN(occurred_at) AS replied_at
    FROM events
    WHERE event_type IN ('interaction.reply', 'message.inbound') AND reply_to IS NOT NULL AND date >= $from
    GROUP BY id_key(reply_to)
),
{{conversions}},
-- Each message's three times side by side, then one row per message and step reached (a
-- cross join with the steps rather than a UNION ALL of three joins to the cohort, which a
-- Ballista cluster answered with every reply counted three times).
per_message AS (
    SELECT s.campaign, s.sent_at, s.read_at, r.replied_at, c.converted_at
    FROM conversions c
    RIGHT JOIN (replies r RIGHT JOIN cohort_once s ON r.message_key = s.message_key) ON c.message_key = s.message_key
),
steps AS (
    SELECT * FROM (VALUES (1, 'read'), (2, 'reply'), (3, 'conversion')) AS t (step_order, step)
),
reached AS (
    SELECT m.campaign, t.step_order, t.step, m.sent_at,
           CASE t.step_order WHEN 1 THEN m.read_at WHEN 2 THEN m.replied_at ELSE m.converted_at END AS reached_at
    FROM per_message m
    CROSS JOIN steps t
),
seconds AS (
    SELECT campaign, step_order, step,
           GREATEST(date_part('epoch', reached_at) - date_part('epoch', sent_at), 0) AS s
    FROM reached
    WHERE reached_at IS NOT NULL
)
SELECT campaign,
       step,
       COUNT(*) AS messages,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS p50_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY s) AS p90_s,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY s) AS p99_s,
       SUM(CASE WHEN s < 60 THEN 1 ELSE 0 END) AS under_1m,
       SUM(CASE WHEN s >= 60 AND s < 600 THEN 1 ELSE 0 END) AS "1m_to_10m",
       SUM(CASE WHEN s >= 600 AND s < 3600 THEN 1 ELSE 0 END) AS "10m_to_1h",
       SUM(CASE WHEN s >= 3600 AND s < 21600 THEN 1 ELSE 0 END) AS "1h_to_6h",
       SUM(CASE WHEN s >= 21600 AND s < 86400 THEN 1 ELSE 0 END) AS "6h_to_1d",
       SUM(CASE WHEN s >= 86400 AND s < 604800 THEN 1 ELSE 0 END) AS "1d_to_7d",
       SUM(CASE WHEN s >= 604800 THEN 1 ELSE 0 END) AS over_7d
FROM seconds
GROUP BY campaign, step_order, step
ORDER BY campaign, step_order

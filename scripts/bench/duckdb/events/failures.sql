-- failures, as convoscope computed it over the events before its reports read the facts tables
-- (queries/facts/): kept for the benchmark as DuckDB's formulation over plain events, the
-- query a team without convoscope would run. The report's definition is queries/failures.sql.
-- failures: why messages fail, per error code, title and template.
--
-- failed: distinct messages of the cohort with a message.failed status of that code.
-- share_of_sent: failed / messages of that template sent in the cohort.
WITH -- cohort: the sends a message report is about, spliced into the reports that name it.
--
-- One row per message first sent (send.accepted or message.sent) on a date in [$from, $to],
-- optionally of one campaign. Attributes come from whichever of its send rows carries them
-- (Meta's sent status has no template; the send record has). Messages and contacts are
-- identified by message_key and contact, id_key() of their ids: DataFusion groups and joins
-- a number faster than a string, and MAX of a number needs no copy of the 64-character key.
-- max_text / min_text are MAX / MIN without a heap allocation per message.
-- cost.sql computes this cohort inside its own per-message aggregation: a change here goes there too.
sends AS (
    SELECT id_key(message_id) AS message_key,
           MIN(occurred_at) AS sent_at,
           min_text(date) AS day,
           max_text(campaign) AS campaign,
           max_text(template) AS template,
           max_text(locale) AS locale,
           MAX(id_key(contact_key)) AS contact
    FROM events
    WHERE event_type IN ('send.accepted', 'message.sent')
      AND message_id IS NOT NULL
      AND date >= $from AND date <= $to
    GROUP BY id_key(message_id)
),
cohort AS (
    SELECT * FROM sends WHERE ($campaign = '' OR campaign = $campaign)
)
,
failed AS (
    SELECT DISTINCT id_key(message_id) AS message_key, error_code, error_title
    FROM events
    WHERE event_type = 'message.failed' AND date >= $from
),
-- The join below gives every cohort message one row, or one per distinct failure (failed_once
-- numbers a message's failures). per_group counts failures per code, title and template
-- (distinct messages, as `failed` is distinct), and messages per template in parts (rows
-- numbered 1 or with no failure), which a window over these few dozen groups sums. The count
-- was a window over the whole cohort, sorting 2.4 million messages by template; this form
-- takes 20% less time at 10 million events (paired runs).
failed_once AS (
    SELECT message_key, error_code, error_title,
           ROW_NUMBER() OVER (PARTITION BY message_key ORDER BY error_code, error_title) AS nth
    FROM failed
),
per_group AS (
    SELECT c.template, f.error_code, f.error_title, f.message_key IS NOT NULL AS is_failure,
           COUNT(f.message_key) AS failed,
           SUM(CASE WHEN f.nth IS NULL OR f.nth = 1 THEN 1 ELSE 0 END) AS sent_part
    FROM failed_once f
    RIGHT JOIN cohort c ON f.message_key = c.message_key
    GROUP BY c.template, f.error_code, f.error_title, f.message_key IS NOT NULL
),
counted AS (
    SELECT template, error_code, error_title, is_failure, failed,
           SUM(sent_part) OVER (PARTITION BY template) AS sent
    FROM per_group
)
SELECT error_code,
       error_title,
       template,
       failed,
       CAST(failed AS DOUBLE) / sent AS share_of_sent
FROM counted
WHERE is_failure
ORDER BY failed DESC, error_code, template

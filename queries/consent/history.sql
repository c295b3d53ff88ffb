-- Every consent change of one contact ($contact: its contact_key), oldest first, from
-- `changes` (changes.sql).
SELECT CAST(occurred_at AS BIGINT) AS at, change, source, category
FROM changes
WHERE contact_key = $contact
ORDER BY at, change

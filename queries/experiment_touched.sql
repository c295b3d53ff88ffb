-- experiment_touched: the contacts whose rows in the kept experiment table the events files
-- newer than it may change (src/analytics/reports/experiment/newer.rs). `new_exposures`,
-- `new_messages` and `new_contact_events` are those files' rollups.
--
-- A contact's rows change only through its own events: an exposure, a message to it or a receipt
-- of one, a conversion or an opt-out. The new rows name the contact, except a message's rows
-- that came without one (a receipt posted without the recipient): that message's contact is
-- found by its key in every file.
SELECT contact FROM new_exposures
UNION
SELECT contact FROM new_messages WHERE contact IS NOT NULL
UNION
SELECT contact FROM new_contact_events
UNION
SELECT contact FROM message_facts
WHERE contact IS NOT NULL
  AND message_key IN (SELECT message_key FROM new_messages WHERE contact IS NULL)

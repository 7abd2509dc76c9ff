-- An incident is updated at every batch that adds alerts to it (revision, counts, last_alert_at). The index on
-- (group_key, last_alert_at) made each such update a new entry in every index of the table, three of them GIN, though
-- no query reads incidents in last_alert_at order: the correlator's lookup of a group's newest incident orders by id.
CREATE INDEX incidents_group_newest ON incidents (group_key, id DESC);
DROP INDEX incidents_group_recent;
-- Room on each page for a row's next version, so that an update changing no indexed column stays on its page (a HOT
-- update) and writes no index entry at all. Pages written before keep their fill until rewritten.
ALTER TABLE incidents SET (fillfactor = 70);

-- Most alert messages are repeats that only move alerts.last_seen_at. With last_seen_at in an index every
-- repeat rewrote all four indexes of the row; without it PostgreSQL can update the row in place (HOT).
-- The stale sweep now scans the firing alerts through a partial index on a column that never changes.
DROP INDEX IF EXISTS alerts_firing_last_seen;
CREATE INDEX alerts_firing ON alerts (starts_at) WHERE status = 'firing';
-- Room on each page for the refreshed row versions, so HOT updates stay on the page.
ALTER TABLE alerts SET (fillfactor = 85);

-- Maintenance windows (shared/maintenance.py). The correlation rules file holds some; these are the ones made through
-- the web API (POST /api/v1/maintenance), read by the correlator once per batch.
--
-- definition: the window in normal form ({name, matchers, start, end} or {name, matchers, weekly}), validated by the
-- same parser as the rules file's. ends_at: a range's end, NULL for a weekly recurrence; it lets the correlator skip
-- windows long over. Rows are never updated: a change is a delete and a new window.
CREATE TABLE maintenance_windows (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    definition  jsonb NOT NULL,
    ends_at     timestamptz,
    created_by  text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The maintenance window (by name) an incident belongs to, set by the correlator; NULL: a real incident. Kept as the
-- name, not a reference: a window deleted later must not change what the incident was.
ALTER TABLE incidents ADD COLUMN maintenance text;

-- The web creates, lists and deletes windows itself (they are configuration, not incident state); bigserial needs the
-- sequence. Nothing in them is secret (0060's rule).
GRANT SELECT, INSERT, DELETE ON maintenance_windows TO vigil_web;
GRANT USAGE ON SEQUENCE maintenance_windows_id_seq TO vigil_web;
GRANT SELECT ON maintenance_windows TO vigil_readonly;

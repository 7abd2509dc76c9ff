-- Indexes for the dashboard's filters over many incidents.
-- Free text (`ILIKE '%disk%'`) over titles and keys: trigram indexes (pg_trgm, a trusted contrib extension
-- that the database owner may create).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX incidents_title_trgm ON incidents USING gin (title gin_trgm_ops);
CREATE INDEX incidents_key_trgm ON incidents USING gin (key gin_trgm_ops);
-- Label matchers `name="value"` (and the alert-name filter) as JSONB containment over the alerts' labels.
CREATE INDEX alerts_labels ON alerts USING gin (labels jsonb_path_ops);

-- What each stored report version was rendered from: the incident revision and enrichment version the renderer
-- read (raised when a newer source renders the same bytes). A rendering of an older source than the newest
-- version's is not stored, so a slow replica cannot make an older report the latest (services/reporter/versions.py).
-- Versions stored before this migration keep NULL, which counts as older than every rendering. Nullable columns
-- without a default: adding them rewrites nothing.
ALTER TABLE reports
    ADD COLUMN incident_revision integer,
    ADD COLUMN enrichment_version integer;

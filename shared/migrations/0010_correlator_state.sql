-- What the correlator needs beyond the core schema to decide, across restarts and replicas:
-- when an incident last saw any alert (the join window), since when nothing fires (auto-resolve grace),
-- firing alerts per severity (severity = highest firing), recent firing/resolved switches (flapping),
-- and the rule's announce threshold.
ALTER TABLE incidents
    ADD COLUMN last_seen_at      timestamptz,
    ADD COLUMN quiet_since       timestamptz,
    ADD COLUMN firing_severities jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN flap_times        timestamptz[] NOT NULL DEFAULT '{}',
    ADD COLUMN min_alerts        integer NOT NULL DEFAULT 1;

-- The sweeper's lookups: incidents waiting for their resolve grace, and flapping ones.
CREATE INDEX incidents_quiet ON incidents (quiet_since) WHERE state <> 'resolved' AND quiet_since IS NOT NULL;
CREATE INDEX incidents_flapping ON incidents (id) WHERE flapping;
-- The outbox drainer's lookup of leftovers, oldest first.
CREATE INDEX outbox_unpublished_created ON outbox (created_at) WHERE published_at IS NULL;

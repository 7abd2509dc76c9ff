-- Retention: resolved incidents are deleted with all their rows VIGIL_RETENTION_DAYS after they resolved, published
-- outbox rows and processed-message ids after VIGIL_MESSAGE_RETENTION_DAYS (services/correlator/retention.py), and
-- report versions nobody needs are pruned (services/reporter/pruning.py). Everything here is instant on a big
-- database except the index builds, which make writes to `incidents`, `processed_messages` and `report_sources` wait
-- while they run (a migration is one transaction, so not CONCURRENTLY): seconds for a million incidents.
--
-- No new index for the deletes by incident: alerts (alerts_incident), incident_timeline (incident_timeline_incident),
-- reports (its primary key, incident_id first, then version), enrichments and report_sources (primary keys) are all
-- reached through an index led by incident_id already, and so are the foreign key checks of deleting an incident.
-- Nor for the outbox, the biggest table (one row per event): retention walks it in id order, which is creation
-- order, and stops at the first row too young; an index on published_at would cost every published event an index
-- entry and the upgrade an index build over every event ever published.

-- Expired incidents, oldest resolve first.
CREATE INDEX incidents_resolved_at ON incidents (resolved_at) WHERE state = 'resolved';

-- Processed-message ids by age.
CREATE INDEX processed_messages_processed_at ON processed_messages (processed_at);

-- The incident state each report version was rendered from: pruning keeps the version made at the resolve.
-- NULL for versions stored before this migration (pruning reads their state from their JSON rendering).
ALTER TABLE reports ADD COLUMN incident_state text;

-- The newest version whose older versions were pruned. An incident is pruned again once it has a newer version: the
-- partial index lists exactly those. Existing rows start at 0, so every incident is looked at once.
ALTER TABLE report_sources ADD COLUMN pruned_version integer NOT NULL DEFAULT 0;
CREATE INDEX report_sources_unpruned ON report_sources (incident_id) WHERE report_version > pruned_version;

-- How far retention has deleted: every incident resolved and opened before `deleted_before` may be gone, none opened
-- at or after it is. An audit states it, and that a period starting earlier is only complete from it on. One row,
-- written by the correlator in the transaction of each deletion; it never moves back (a longer retention set later
-- does not bring deleted incidents back).
CREATE TABLE retention_horizon (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    deleted_before timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- The audit (the web's downloads) says the horizon; it holds nothing secret (0060's rule for new tables).
GRANT SELECT ON retention_horizon TO vigil_web, vigil_readonly;

-- Named queries of the reporter's store (shared.db.Queries): its reports, their sources and their pruning. An
-- incident and what it is made of are read through the read model (shared/readmodel/queries.sql). Values are always
-- bound parameters.

-- name: lock_incident_reports
-- Serialises replicas storing reports of one incident; the two-key form keeps clear of other advisory locks.
SELECT pg_advisory_xact_lock(1919250290, (%(incident_id)s %% 2147483647)::integer)

-- name: latest_reports
-- With what the newest version was rendered from (NULL: stored before sources were recorded).
SELECT version, format, sha256, incident_revision, enrichment_version
FROM reports
WHERE incident_id = %(incident_id)s
  AND version = (SELECT max(version) FROM reports WHERE incident_id = %(incident_id)s)

-- name: insert_report
INSERT INTO reports (incident_id, version, format, content, sha256, incident_revision, enrichment_version,
                     incident_state)
VALUES (%(incident_id)s, %(version)s, %(format)s, %(content)s, %(sha256)s, %(incident_revision)s,
        %(enrichment_version)s, %(incident_state)s)

-- name: raise_report_source
-- A newer source rendered the same bytes: the version shows that state too, so an older rendering is superseded.
UPDATE reports SET incident_revision = %(incident_revision)s, enrichment_version = %(enrichment_version)s
WHERE incident_id = %(incident_id)s AND version = %(version)s

-- name: incident_id_by_key
SELECT id, severity FROM incidents WHERE key = %(key)s

-- Coalescing: the incident's current revision and enrichment version beside what its newest reports came from.

-- name: report_freshness
SELECT i.revision, i.state, e.version AS enrichment_version, s.incident_revision AS reported_revision,
       s.enrichment_version AS reported_enrichment_version, s.published, s.rendered_at
FROM incidents i
LEFT JOIN enrichments e ON e.incident_id = i.id
LEFT JOIN report_sources s ON s.incident_id = i.id
WHERE i.key = %(key)s

-- name: record_report_source
-- In the transaction that stores the version, under its lock: the row always describes the newest version.
INSERT INTO report_sources (incident_id, report_version, incident_revision, enrichment_version, published)
VALUES (%(incident_id)s, %(report_version)s, %(incident_revision)s, %(enrichment_version)s, false)
ON CONFLICT (incident_id) DO UPDATE
SET report_version = EXCLUDED.report_version,
    incident_revision = EXCLUDED.incident_revision,
    enrichment_version = EXCLUDED.enrichment_version,
    published = false,
    rendered_at = now()

-- name: mark_report_published
UPDATE report_sources SET published = true
WHERE incident_id = (SELECT id FROM incidents WHERE key = %(key)s) AND report_version = %(report_version)s

-- Pruning of report versions (services/reporter/pruning.py): which versions go is decided in Python.

-- name: try_prune_lock
SELECT pg_try_advisory_xact_lock(%(key)s) AS got

-- name: prune_limits
-- A pruning transaction neither waits long for a lock nor runs long: past these it fails, and the next pass retries.
SELECT set_config('lock_timeout', '2s', true) AS lock_timeout, set_config('statement_timeout', '30s', true) AS timeout

-- name: unpruned_incidents
-- Incidents with a version newer than the last pruning (through report_sources_unpruned).
SELECT incident_id FROM report_sources
WHERE report_version > pruned_version
ORDER BY incident_id
LIMIT %(limit)s

-- name: report_versions
-- Every stored version of an incident, its formats and the incident state it was rendered from. A version stored
-- before states were recorded (migration 0061) says its state in its JSON rendering, read for those versions only.
SELECT version, array_agg(format ORDER BY format) AS formats,
       coalesce(max(incident_state),
                max(CASE WHEN incident_state IS NULL AND format = 'json'
                         THEN convert_from(content, 'UTF8')::jsonb #>> '{summary,state}' END)) AS state
FROM reports
WHERE incident_id = %(incident_id)s
GROUP BY version
ORDER BY version

-- name: delete_report_rows
DELETE FROM reports r
USING unnest(%(versions)s::integer[], %(formats)s::text[]) AS d(version, format)
WHERE r.incident_id = %(incident_id)s AND r.version = d.version AND r.format = d.format

-- name: mark_pruned
-- Under the incident's report lock, so `report_version` is the newest version the pruning saw.
UPDATE report_sources SET pruned_version = report_version WHERE incident_id = %(incident_id)s

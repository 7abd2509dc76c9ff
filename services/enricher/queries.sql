-- Named queries of the enricher (shared.db.Queries). It reads incidents and alerts (the correlator writes
-- them) and writes only `enrichments`.

-- name: incident_by_key
-- With the revision its stored enrichment was computed for and whether that one was announced.
SELECT i.id, i.key, i.title, i.state, i.severity, i.rule, i.group_labels, i.hosts, i.alert_count, i.firing_count,
       i.flapping, i.revision, i.opened_at, i.first_alert_at, i.last_alert_at, i.acknowledged_at, i.resolved_at,
       e.incident_revision AS enriched_revision, e.published AS enrichment_published, e.created_at AS enriched_at
FROM incidents i
LEFT JOIN enrichments e ON e.incident_id = i.id
WHERE i.key = %(key)s

-- name: incident_alerts
-- Bounded: an incident of thousands of alerts still needs only their starts on the timeline.
SELECT alertname, host, labels, generator_url, starts_at, ends_at, severity
FROM alerts
WHERE incident_id = %(incident_id)s
ORDER BY starts_at, id
LIMIT 500

-- name: upsert_enrichment
-- Replaces the incident's context and bumps its version; a context computed for an older revision of the
-- incident than the stored one changes nothing (no row comes back).
INSERT INTO enrichments (incident_id, version, incident_revision, complete, context, created_at)
VALUES (%(incident_id)s, 1, %(revision)s, %(complete)s, %(context)s, now())
ON CONFLICT (incident_id) DO UPDATE
SET version = enrichments.version + 1,
    incident_revision = EXCLUDED.incident_revision,
    complete = EXCLUDED.complete,
    context = EXCLUDED.context,
    published = false,
    created_at = now()
WHERE enrichments.incident_revision <= EXCLUDED.incident_revision
RETURNING version

-- name: enrichment_by_incident
SELECT version, incident_revision, complete, context, created_at
FROM enrichments
WHERE incident_id = %(incident_id)s

-- name: mark_published
UPDATE enrichments SET published = true WHERE incident_id = %(incident_id)s AND version = %(version)s

-- Named queries of the enricher (shared.db.Queries). It reads incidents and alerts through the read model
-- (shared/readmodel/queries.sql; the correlator writes them) and writes only `enrichments`.

-- name: enrichment_progress
-- The revision the incident's stored enrichment was computed for, whether that one was announced, and when.
SELECT incident_revision AS enriched_revision, published AS enrichment_published, created_at AS enriched_at
FROM enrichments
WHERE incident_id = %(incident_id)s

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

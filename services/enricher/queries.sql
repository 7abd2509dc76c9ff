-- Named queries of the enricher (shared.db.Queries). It reads incidents and alerts through the read model
-- (shared/readmodel/queries.sql; the correlator writes them) and writes only `enrichments` and the `log` tokens of
-- incident signatures (migration 0065).

-- name: take_enrichment_requests
-- Takes (deletes) the standing enrichment requests of the incidents %(keys)s (a text[]) before their state is read
-- (migration 0070): a change the correlator commits after this finds no request and asks again. Waits for a batch
-- that holds one of them, in incident id order as the correlator locks them.
DELETE FROM enrichment_requests q WHERE q.incident_id IN (
    SELECT r.incident_id FROM enrichment_requests r JOIN incidents i ON i.id = r.incident_id
    WHERE i.key = ANY(%(keys)s)
    ORDER BY r.incident_id
    FOR UPDATE OF r
)

-- name: keep_enrichment_requests
-- The requests of incidents whose enrichment was put off (a deferred copy is on its way back): while it stands, the
-- correlator sends no more messages for them.
INSERT INTO enrichment_requests (incident_id, requested_at)
SELECT i.id, now() FROM incidents i WHERE i.key = ANY(%(keys)s) ORDER BY i.id
ON CONFLICT (incident_id) DO NOTHING

-- name: enrichment_progress
-- Incidents' current revision (announced ones only, as every reader sees them), and the revision their stored
-- enrichment was computed for, whether that one was announced, and when (NULL: never enriched). %(keys)s: a text[].
SELECT i.key, i.revision, e.incident_revision AS enriched_revision, e.published AS enrichment_published,
       e.created_at AS enriched_at
FROM incidents i
LEFT JOIN enrichments e ON e.incident_id = i.id
WHERE i.key = ANY(%(keys)s) AND i.announced

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

-- name: replace_log_signature
-- The incident's `log` signature tokens become the templates of this enrichment, in the transaction that stores it
-- (only when it was stored: a context for an older revision changes neither). Tokens no longer wanted go, new ones
-- come; the ones kept are not rewritten.
WITH wanted AS (
    SELECT DISTINCT signature_token('log', t) AS token FROM unnest(%(templates)s::text[]) AS t
), gone AS (
    DELETE FROM incident_signature_tokens s
    WHERE s.incident_id = %(incident_id)s AND s.kind = 'log' AND s.token NOT IN (SELECT token FROM wanted)
)
INSERT INTO incident_signature_tokens (incident_id, token, kind, opened_at)
SELECT i.id, w.token, 'log', i.opened_at
FROM wanted w JOIN incidents i ON i.id = %(incident_id)s
ON CONFLICT DO NOTHING

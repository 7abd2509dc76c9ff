-- The one read model of incidents (shared.readmodel), read by the enricher, the reporter and the web; the
-- correlator is the only writer. Values are always bound parameters.

-- name: incident_by_key
-- Only announced incidents: one held below its rule's min_alerts was never published, so no reader shows it.
SELECT i.id, i.key, i.rule, i.group_labels, i.title, i.state, i.severity, i.hosts, i.flapping, i.revision,
       i.alert_count, i.firing_count, i.opened_at, i.first_alert_at, i.last_alert_at, i.acknowledged_at,
       i.acknowledged_by, i.resolved_at, i.resolved_by, i.maintenance, i.updated_at
FROM incidents i
WHERE i.key = %(key)s AND i.announced

-- name: incident_alerts
SELECT a.fingerprint, a.alertname, a.severity, a.host, a.status, a.starts_at, a.ends_at, a.resolved_at,
       a.first_seen_at, a.last_seen_at, a.labels, a.annotations, a.generator_url, a.source, a.sender, a.receiver,
       a.adjustments, a.suppressed, a.silenced_by, a.inhibited_by, a.suppressed_until,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('id', s.id, 'created_by', s.created_by, 'comment', s.comment,
                                                     'ends_at', s.ends_at) ORDER BY s.ends_at), '[]')
        FROM silences s WHERE s.id = ANY(a.silenced_by)) AS silences
FROM alerts a
WHERE a.incident_id = %(incident_id)s
ORDER BY a.starts_at, a.id

-- name: incident_alerts_first
-- The first alerts by start time, for readers that need a bounded number of an incident of thousands.
SELECT a.fingerprint, a.alertname, a.severity, a.host, a.status, a.starts_at, a.ends_at, a.resolved_at,
       a.first_seen_at, a.last_seen_at, a.labels, a.annotations, a.generator_url, a.source, a.sender, a.receiver,
       a.adjustments, a.suppressed, a.silenced_by, a.inhibited_by, a.suppressed_until,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('id', s.id, 'created_by', s.created_by, 'comment', s.comment,
                                                     'ends_at', s.ends_at) ORDER BY s.ends_at), '[]')
        FROM silences s WHERE s.id = ANY(a.silenced_by)) AS silences
FROM alerts a
WHERE a.incident_id = %(incident_id)s
ORDER BY a.starts_at, a.id
LIMIT %(limit)s

-- name: incident_timeline
SELECT t.at, t.kind, t.actor, t.detail
FROM incident_timeline t
WHERE t.incident_id = %(incident_id)s
ORDER BY t.at, t.id

-- name: incident_enrichment
SELECT e.version, e.complete, e.context, e.created_at
FROM enrichments e
WHERE e.incident_id = %(incident_id)s

-- name: read_only_snapshot
-- The first statement of a transaction whose reads must agree with each other.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY

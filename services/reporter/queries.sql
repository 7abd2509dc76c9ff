-- Named queries of the reporter (shared.db.Queries). Values are always bound parameters.

-- name: incident_by_key
SELECT id, key, rule, group_labels, title, state, severity, hosts, flapping, revision, alert_count, firing_count,
       opened_at, first_alert_at, last_alert_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by,
       updated_at
FROM incidents
WHERE key = %(key)s

-- name: incident_alerts
SELECT fingerprint, alertname, severity, host, status, starts_at, ends_at, resolved_at, first_seen_at, last_seen_at,
       labels, annotations, generator_url, source, sender, receiver, adjustments
FROM alerts
WHERE incident_id = %(incident_id)s
ORDER BY starts_at, id

-- name: incident_timeline
SELECT at, kind, actor, detail
FROM incident_timeline
WHERE incident_id = %(incident_id)s
ORDER BY at, id

-- name: incident_enrichment
SELECT version, context
FROM enrichments
WHERE incident_id = %(incident_id)s

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
INSERT INTO reports (incident_id, version, format, content, sha256, incident_revision, enrichment_version)
VALUES (%(incident_id)s, %(version)s, %(format)s, %(content)s, %(sha256)s, %(incident_revision)s,
        %(enrichment_version)s)

-- name: raise_report_source
-- A newer source rendered the same bytes: the version shows that state too, so an older rendering is superseded.
UPDATE reports SET incident_revision = %(incident_revision)s, enrichment_version = %(enrichment_version)s
WHERE incident_id = %(incident_id)s AND version = %(version)s

-- name: latest_report_content
SELECT r.version, r.content, r.sha256, r.created_at
FROM reports r JOIN incidents i ON i.id = r.incident_id
WHERE i.key = %(key)s AND r.format = %(format)s
ORDER BY r.version DESC
LIMIT 1

-- Audit: the incidents of a period are the announced ones opened in [since, until). Times as epoch microseconds so
-- the CSV does not depend on the session's time zone or date style.

-- name: audit_as_of
SELECT now() AS as_of

-- name: audit_incidents_csv
COPY (
    SELECT id, key, title, state, severity, rule, array_to_string(hosts, ', ') AS hosts, alert_count, flapping,
           (extract(epoch FROM opened_at) * 1000000)::bigint AS opened_at,
           (extract(epoch FROM acknowledged_at) * 1000000)::bigint AS acknowledged_at,
           acknowledged_by,
           (extract(epoch FROM resolved_at) * 1000000)::bigint AS resolved_at,
           resolved_by
    FROM incidents
    WHERE announced AND opened_at >= %(since)s AND opened_at < %(until)s
    ORDER BY opened_at, id
) TO STDOUT WITH (FORMAT csv, HEADER true)

-- name: audit_incident_hosts_csv
COPY (
    SELECT i.id AS incident_id, h.host
    FROM incidents i CROSS JOIN LATERAL unnest(i.hosts) AS h(host)
    WHERE i.announced AND i.opened_at >= %(since)s AND i.opened_at < %(until)s
) TO STDOUT WITH (FORMAT csv, HEADER true)

-- name: audit_alerts_csv
COPY (
    SELECT a.incident_id, a.alertname, coalesce(a.host, '') AS host, a.severity, a.fingerprint
    FROM alerts a JOIN incidents i ON i.id = a.incident_id
    WHERE i.announced AND i.opened_at >= %(since)s AND i.opened_at < %(until)s
) TO STDOUT WITH (FORMAT csv, HEADER true)

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

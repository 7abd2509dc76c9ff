-- Reads of the web dashboard and API. The web never writes incident state: changes go to the
-- correlator as commands. Optional filters are "parameter IS NULL OR condition", run unprepared so
-- PostgreSQL plans each call with its actual values (a generic plan would ignore the indexes).

-- name: list_incidents
-- Newest first, keyset-paginated on (opened_at, id) along the incidents_newest index.
SELECT i.id, i.key, i.title, i.state, i.severity, i.hosts, i.rule, i.alert_count, i.firing_count, i.flapping,
       i.revision, i.opened_at, i.first_alert_at, i.last_alert_at, i.acknowledged_at, i.acknowledged_by,
       i.resolved_at, i.resolved_by, i.updated_at
FROM incidents i
WHERE i.announced
  AND (%(states)s::text[] IS NULL OR i.state = ANY (%(states)s::text[]))
  AND (%(severities)s::text[] IS NULL OR i.severity = ANY (%(severities)s::text[]))
  AND (%(host)s::text IS NULL OR i.hosts @> ARRAY[%(host)s::text])
  AND (%(text)s::text IS NULL OR i.title ILIKE %(text)s::text OR i.key ILIKE %(text)s::text)
  AND (%(since)s::timestamptz IS NULL OR i.opened_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR i.opened_at < %(until)s::timestamptz)
  AND (%(cursor_at)s::timestamptz IS NULL
       OR (i.opened_at, i.id) < (%(cursor_at)s::timestamptz, %(cursor_id)s::bigint))
  AND (NOT %(has_matchers)s::boolean OR EXISTS (
        -- One alert of the incident satisfies every matcher; a missing label matches like "" (Alertmanager).
        SELECT 1 FROM alerts a
        WHERE a.incident_id = i.id
          AND NOT EXISTS (
            SELECT 1
            FROM unnest(%(m_names)s::text[], %(m_ops)s::text[], %(m_values)s::text[]) AS m (name, op, value)
            WHERE NOT CASE m.op
                WHEN '=' THEN coalesce(a.labels ->> m.name, '') = m.value
                WHEN '!=' THEN coalesce(a.labels ->> m.name, '') <> m.value
                WHEN '=~' THEN coalesce(a.labels ->> m.name, '') ~ ('^(?:' || m.value || ')$')
                WHEN '!~' THEN coalesce(a.labels ->> m.name, '') !~ ('^(?:' || m.value || ')$')
            END)))
ORDER BY i.opened_at DESC, i.id DESC
LIMIT %(limit)s;

-- name: count_by_state
-- The same filters without the state and the cursor: the counts shown beside each state's tab.
SELECT i.state, count(*) AS n
FROM incidents i
WHERE i.announced
  AND (%(severities)s::text[] IS NULL OR i.severity = ANY (%(severities)s::text[]))
  AND (%(host)s::text IS NULL OR i.hosts @> ARRAY[%(host)s::text])
  AND (%(text)s::text IS NULL OR i.title ILIKE %(text)s::text OR i.key ILIKE %(text)s::text)
  AND (%(since)s::timestamptz IS NULL OR i.opened_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR i.opened_at < %(until)s::timestamptz)
  AND (NOT %(has_matchers)s::boolean OR EXISTS (
        SELECT 1 FROM alerts a
        WHERE a.incident_id = i.id
          AND NOT EXISTS (
            SELECT 1
            FROM unnest(%(m_names)s::text[], %(m_ops)s::text[], %(m_values)s::text[]) AS m (name, op, value)
            WHERE NOT CASE m.op
                WHEN '=' THEN coalesce(a.labels ->> m.name, '') = m.value
                WHEN '!=' THEN coalesce(a.labels ->> m.name, '') <> m.value
                WHEN '=~' THEN coalesce(a.labels ->> m.name, '') ~ ('^(?:' || m.value || ')$')
                WHEN '!~' THEN coalesce(a.labels ->> m.name, '') !~ ('^(?:' || m.value || ')$')
            END)))
GROUP BY i.state;

-- name: incident_by_key
SELECT i.id, i.key, i.title, i.state, i.severity, i.hosts, i.rule, i.group_labels, i.alert_count, i.firing_count,
       i.flapping, i.revision, i.opened_at, i.first_alert_at, i.last_alert_at, i.acknowledged_at,
       i.acknowledged_by, i.resolved_at, i.resolved_by, i.updated_at
FROM incidents i
WHERE i.key = %(key)s AND i.announced;

-- name: incident_alerts
SELECT a.fingerprint, a.starts_at, a.ends_at, a.status, a.alertname, a.severity, a.host, a.labels, a.annotations,
       a.generator_url, a.source, a.sender, a.first_seen_at, a.last_seen_at, a.resolved_at
FROM alerts a
WHERE a.incident_id = %(incident_id)s
ORDER BY a.starts_at, a.id;

-- name: incident_timeline
SELECT t.at, t.kind, t.actor, t.detail
FROM incident_timeline t
WHERE t.incident_id = %(incident_id)s
ORDER BY t.at, t.id;

-- name: incident_enrichment
SELECT e.version, e.complete, e.context, e.created_at
FROM enrichments e
WHERE e.incident_id = %(incident_id)s;

-- name: latest_report
SELECT r.version, r.content, r.created_at
FROM reports r
WHERE r.incident_id = %(incident_id)s AND r.format = %(format)s
ORDER BY r.version DESC
LIMIT 1;

-- name: session_create
INSERT INTO web_sessions (token_hash, username, method, csrf_token, expires_at)
VALUES (%(token_hash)s, %(username)s, %(method)s, %(csrf_token)s, now() + make_interval(secs => %(ttl_s)s));

-- name: session_get
SELECT s.username, s.method, s.csrf_token, s.expires_at
FROM web_sessions s
WHERE s.token_hash = %(token_hash)s AND s.expires_at > now();

-- name: session_delete
DELETE FROM web_sessions WHERE token_hash = %(token_hash)s;

-- name: sessions_expire
DELETE FROM web_sessions WHERE expires_at <= now();

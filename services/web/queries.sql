-- Reads of the web dashboard and API beside the read model (shared/readmodel/queries.sql): the incident list,
-- what the incident page summarises, sessions and logins. The web never writes incident state: changes go to the
-- correlator as commands. Optional filters are "parameter IS NULL OR condition", run unprepared so
-- PostgreSQL plans each call with its actual values (a generic plan would ignore the indexes).

-- name: list_incidents
-- Newest first, keyset-paginated on (opened_at, id) along the incidents_newest index. Label matchers keep
-- the incidents having one alert that satisfies all of them, probed per incident (alerts_incident) so a
-- page stops after `limit` matches: equality matchers as JSONB containment, the others (!=, =~, !~, ="")
-- one by one; a missing label matches like "", and regexes are anchored, as in Alertmanager.
-- When many alerts match, store.py runs it with the fence comment below replaced by OFFSET 0: that keeps the
-- alert check a per-incident probe, so the page stops after `limit` matches instead of first collecting every
-- matching alert (which the planner prefers).
SELECT i.id, i.key, i.title, i.state, i.severity, i.hosts, i.rule, i.alert_count, i.firing_count, i.flapping,
       i.revision, i.opened_at, i.first_alert_at, i.last_alert_at, i.acknowledged_at, i.acknowledged_by,
       i.resolved_at, i.resolved_by, i.maintenance, i.updated_at
FROM incidents i
WHERE i.announced
  AND (%(states)s::text[] IS NULL OR i.state = ANY (%(states)s::text[]))
  AND (%(severities)s::text[] IS NULL OR i.severity = ANY (%(severities)s::text[]))
  AND (%(host)s::text IS NULL OR i.hosts @> ARRAY[%(host)s::text])
  AND (%(text)s::text IS NULL OR i.title ILIKE %(text)s::text OR lower(i.key) ILIKE %(text)s::text)
  AND (%(since)s::timestamptz IS NULL OR i.opened_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR i.opened_at < %(until)s::timestamptz)
  AND (%(cursor_at)s::timestamptz IS NULL
       OR (i.opened_at, i.id) < (%(cursor_at)s::timestamptz, %(cursor_id)s::bigint))
  AND (NOT %(has_matchers)s::boolean OR EXISTS (
        SELECT 1
        FROM alerts a
        WHERE a.incident_id = i.id
          AND (%(label_eq)s::jsonb IS NULL OR a.labels @> %(label_eq)s::jsonb)
          AND NOT EXISTS (
            SELECT 1
            FROM unnest(%(m_names)s::text[], %(m_ops)s::text[], %(m_values)s::text[]) AS m (name, op, value)
            WHERE NOT CASE m.op
                WHEN '=' THEN coalesce(a.labels ->> m.name, '') = m.value
                WHEN '!=' THEN coalesce(a.labels ->> m.name, '') <> m.value
                WHEN '=~' THEN coalesce(a.labels ->> m.name, '') ~ ('^(?:' || m.value || ')$')
                WHEN '!~' THEN coalesce(a.labels ->> m.name, '') !~ ('^(?:' || m.value || ')$')
            END) /* probe fence */))
ORDER BY i.opened_at DESC, i.id DESC
LIMIT %(limit)s;

-- name: count_by_state
-- The same filters without the state and the cursor, for the counts beside each state's tab. Each count
-- stops at count_cap (shown as "N+"): exact counts of a long history would cost a scan per page view.
-- Here the matching incidents are collected once from the alerts (GIN index alerts_labels for equality).
WITH matching AS MATERIALIZED (
    SELECT DISTINCT a.incident_id
    FROM alerts a
    WHERE %(has_matchers)s::boolean
      AND (%(label_eq)s::jsonb IS NULL OR a.labels @> %(label_eq)s::jsonb)
      AND NOT EXISTS (
        SELECT 1
        FROM unnest(%(m_names)s::text[], %(m_ops)s::text[], %(m_values)s::text[]) AS m (name, op, value)
        WHERE NOT CASE m.op
            WHEN '=' THEN coalesce(a.labels ->> m.name, '') = m.value
            WHEN '!=' THEN coalesce(a.labels ->> m.name, '') <> m.value
            WHEN '=~' THEN coalesce(a.labels ->> m.name, '') ~ ('^(?:' || m.value || ')$')
            WHEN '!~' THEN coalesce(a.labels ->> m.name, '') !~ ('^(?:' || m.value || ')$')
        END)
)
SELECT s.state, (
    SELECT count(*) FROM (
        SELECT 1
        FROM incidents i
        WHERE i.state = s.state
          AND i.announced
          AND (%(severities)s::text[] IS NULL OR i.severity = ANY (%(severities)s::text[]))
          AND (%(host)s::text IS NULL OR i.hosts @> ARRAY[%(host)s::text])
          AND (%(text)s::text IS NULL OR i.title ILIKE %(text)s::text OR lower(i.key) ILIKE %(text)s::text)
          AND (%(since)s::timestamptz IS NULL OR i.opened_at >= %(since)s::timestamptz)
          AND (%(until)s::timestamptz IS NULL OR i.opened_at < %(until)s::timestamptz)
          AND (NOT %(has_matchers)s::boolean OR i.id IN (SELECT incident_id FROM matching))
        LIMIT %(count_cap)s
    ) AS capped) AS n
FROM unnest(ARRAY['open', 'acknowledged', 'resolved']) AS s (state);

-- name: matching_alerts_capped
-- How many alerts the equality matchers select, counted up to a bound: tells a sparse matcher (collect the
-- few matching alerts through the GIN index) from a dense one (probe incidents newest first).
SELECT count(*) AS n
FROM (SELECT 1 FROM alerts a WHERE a.labels @> %(label_eq)s::jsonb LIMIT %(bound)s) AS capped;

-- name: incident_alert_summary
SELECT a.alertname, a.status, count(*) AS n, count(DISTINCT a.host) AS hosts, min(a.starts_at) AS first_start,
       max(a.starts_at) AS last_start
FROM alerts a
WHERE a.incident_id = %(incident_id)s
GROUP BY a.alertname, a.status
ORDER BY n DESC, a.alertname, a.status;

-- name: incident_alert_starts
-- Chart markers: a minute is finer than a chart's pixel, and 10,000 alerts fit in far fewer minutes.
SELECT DISTINCT date_trunc('minute', a.starts_at) AS starts_at
FROM alerts a
WHERE a.incident_id = %(incident_id)s
ORDER BY 1;

-- name: incident_timeline_page
-- The page's timeline: every entry, except that the per-alert kinds stop after `per_kind` entries each (an
-- incident of 10,000 alerts would otherwise list 10,000 "alert added" lines); the counts say how many more.
SELECT t.at, t.kind, t.actor, t.detail
FROM (
    SELECT t.*, row_number() OVER (PARTITION BY t.kind ORDER BY t.at, t.id) AS nth
    FROM incident_timeline t
    WHERE t.incident_id = %(incident_id)s
) t
WHERE t.nth <= %(per_kind)s OR NOT t.kind = ANY (%(per_alert_kinds)s::text[])
ORDER BY t.at, t.id;

-- name: incident_timeline_counts
SELECT t.kind, count(*) AS n
FROM incident_timeline t
WHERE t.incident_id = %(incident_id)s
GROUP BY t.kind;

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

-- name: login_attempts_lock
-- Attempts at one name take turns (until commit), so each sees every earlier one: parallel guesses, even
-- through several web replicas, cannot all slip under the limit. The two-key form keeps clear of other locks.
SELECT pg_advisory_xact_lock(%(lock_class)s, hashtext(%(username)s));

-- name: login_address_lock
-- Likewise attempts from one client address (taken after the name's lock, in every attempt).
SELECT pg_advisory_xact_lock(%(address_lock_class)s, hashtext(%(address)s));

-- name: login_attempts_seen
-- The earlier attempts in their windows, oldest first: at the name, and from the address (none without one).
SELECT now() AS now,
       array(SELECT a.at FROM web_login_attempts a
             WHERE a.username = %(username)s AND a.at > now() - make_interval(secs => %(name_window_s)s)
             ORDER BY a.at) AS by_name,
       array(SELECT a.at FROM web_login_attempts a
             WHERE a.address = %(address)s::text AND a.at > now() - make_interval(secs => %(address_window_s)s)
             ORDER BY a.at) AS by_address;

-- name: login_attempt_add
-- Old attempts go first, so the table holds at most one window of them.
WITH expired AS (DELETE FROM web_login_attempts WHERE at <= now() - make_interval(secs => %(window_s)s))
INSERT INTO web_login_attempts (username, address) VALUES (%(username)s, %(address)s::text);

-- name: login_attempts_clear
DELETE FROM web_login_attempts WHERE username = %(username)s;

-- Named queries of the correlator (shared.db.Queries). Batches travel as one JSON array parameter
-- expanded with jsonb_to_recordset, so a batch of 200 alerts is a handful of statements, not 1,000.

-- name: lock_groups
-- Per-group transaction locks, taken in the order given (the caller sorts), so replicas never deadlock.
SELECT count(pg_advisory_xact_lock(k)) AS locked FROM unnest(%(keys)s::bigint[]) AS k;

-- name: try_sweep_lock
SELECT pg_try_advisory_xact_lock(%(key)s) AS got;

-- name: incidents_by_key
SELECT id, key, group_key FROM incidents WHERE key = ANY(%(keys)s);

-- name: processed_commands
SELECT message_id FROM processed_messages WHERE consumer = 'correlator' AND message_id = ANY(%(ids)s);

-- name: mark_processed
INSERT INTO processed_messages (consumer, message_id)
SELECT 'correlator', id FROM unnest(%(ids)s::uuid[]) AS id
ON CONFLICT DO NOTHING;

-- name: load_alerts
-- The exact occurrences of the batch (exact = true), plus the newest occurrence of each fingerprint (to spot
-- a refire, or the repeat of an alert whose impossible startsAt was replaced). Labels and annotations stay in
-- the database: a known occurrence never rewrites them. `keys`: the batch's (fingerprint, startsAt) pairs as one JSON
-- array of {"fp", "s"}, encoded by orjson (psycopg dumps array parameters element by element, in Python, and this
-- pair of arrays was dumped twice per batch).
SELECT a.id, a.incident_id, a.fingerprint, a.starts_at, a.ends_at, a.status, a.alertname, a.severity, a.host,
       a.generator_url, a.source, a.sender, a.receiver, a.first_seen_at, a.last_seen_at, a.resolved_at,
       a.adjustments ->> 'starts_at' AS sent_starts_at,
       a.suppressed, a.silenced_by, a.inhibited_by, a.suppressed_until, true AS exact
FROM alerts a
JOIN json_to_recordset(%(keys)s::json) AS k(fp text, s timestamptz) ON a.fingerprint = k.fp AND a.starts_at = k.s
UNION ALL
SELECT n.*, false AS exact FROM (SELECT DISTINCT k.fp FROM json_to_recordset(%(keys)s::json) AS k(fp text)) f
CROSS JOIN LATERAL (
    SELECT a.id, a.incident_id, a.fingerprint, a.starts_at, a.ends_at, a.status, a.alertname, a.severity, a.host,
       a.generator_url, a.source, a.sender, a.receiver, a.first_seen_at, a.last_seen_at, a.resolved_at,
       a.adjustments ->> 'starts_at' AS sent_starts_at,
       a.suppressed, a.silenced_by, a.inhibited_by, a.suppressed_until
    FROM alerts a WHERE a.fingerprint = f.fp ORDER BY a.starts_at DESC LIMIT 1
) n;

-- name: load_incidents
-- Incidents of the batch's known alerts and of the given ids, the incident of the newest occurrence of each
-- fingerprint sent with an impossible startsAt (`odd_fps`, nearly always empty), and per group the unresolved
-- incident or else the newest one. Sent in the same round trip as load_alerts, so it finds the alerts' incidents
-- itself.
SELECT i.* FROM incidents i
WHERE i.id = ANY(%(ids)s)
   OR i.id IN (
       SELECT a.incident_id FROM alerts a
       JOIN json_to_recordset(%(keys)s::json) AS k(fp text, s timestamptz)
         ON a.fingerprint = k.fp AND a.starts_at = k.s)
   OR i.id IN (
       SELECT n.incident_id FROM unnest(%(odd_fps)s::text[]) AS f(fp)
       CROSS JOIN LATERAL (
           SELECT a.incident_id FROM alerts a WHERE a.fingerprint = f.fp ORDER BY a.starts_at DESC LIMIT 1) n)
UNION ALL
SELECT c.* FROM unnest(%(groups)s::text[]) AS g(gk)
CROSS JOIN LATERAL (
    SELECT * FROM incidents i WHERE i.group_key = g.gk ORDER BY (i.state <> 'resolved') DESC, i.id DESC LIMIT 1
) c;

-- name: next_incident_numbers
SELECT nextval('incident_number_seq') AS n FROM generate_series(1, %(count)s);

-- name: insert_incidents
INSERT INTO incidents (key, rule, group_key, group_labels, title, state, announced, severity, hosts, flapping,
                       flap_times, revision, alert_count, firing_count, firing_severities, min_alerts,
                       opened_at, first_alert_at, last_alert_at, last_seen_at, quiet_since,
                       acknowledged_at, acknowledged_by, resolved_at, resolved_by, maintenance, updated_at)
SELECT r.key, r.rule, r.group_key, r.group_labels, r.title, r.state, r.announced, r.severity, r.hosts, r.flapping,
       r.flap_times, r.revision, r.alert_count, r.firing_count, r.firing_severities, r.min_alerts,
       r.opened_at, r.first_alert_at, r.last_alert_at, r.last_seen_at, r.quiet_since,
       r.acknowledged_at, r.acknowledged_by, r.resolved_at, r.resolved_by, r.maintenance, now()
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
    key text, rule text, group_key text, group_labels jsonb, title text, state text, announced boolean,
    severity text, hosts text[], flapping boolean, flap_times timestamptz[], revision integer,
    alert_count integer, firing_count integer, firing_severities jsonb, min_alerts integer,
    opened_at timestamptz, first_alert_at timestamptz, last_alert_at timestamptz, last_seen_at timestamptz,
    quiet_since timestamptz, acknowledged_at timestamptz, acknowledged_by text, resolved_at timestamptz,
    resolved_by text, maintenance text)
RETURNING id, key;

-- name: update_incidents
UPDATE incidents i SET
    title = r.title, state = r.state, announced = r.announced, severity = r.severity, hosts = r.hosts,
    flapping = r.flapping, flap_times = r.flap_times, revision = r.revision, alert_count = r.alert_count,
    firing_count = r.firing_count, firing_severities = r.firing_severities,
    first_alert_at = r.first_alert_at, last_alert_at = r.last_alert_at, last_seen_at = r.last_seen_at,
    quiet_since = r.quiet_since, acknowledged_at = r.acknowledged_at, acknowledged_by = r.acknowledged_by,
    resolved_at = r.resolved_at, resolved_by = r.resolved_by, maintenance = r.maintenance, updated_at = now()
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
    id bigint, title text, state text, announced boolean, severity text, hosts text[], flapping boolean,
    flap_times timestamptz[], revision integer, alert_count integer, firing_count integer,
    firing_severities jsonb, first_alert_at timestamptz, last_alert_at timestamptz, last_seen_at timestamptz,
    quiet_since timestamptz, acknowledged_at timestamptz, acknowledged_by text, resolved_at timestamptz,
    resolved_by text, maintenance text)
WHERE i.id = r.id;

-- name: upsert_alerts
-- What was adjusted to store an alert is written with its first notification and never changed after.
-- `notifications`: those the batch received for the occurrence (0 for a change that was no notification, a stale
-- mark or a suppression): the count of a new row, added to the stored count of a known one.
INSERT INTO alerts (incident_id, fingerprint, starts_at, ends_at, status, alertname, severity, host, labels,
                    annotations, generator_url, source, sender, receiver, first_seen_at, last_seen_at, resolved_at,
                    adjustments, suppressed, silenced_by, inhibited_by, suppressed_until, notifications)
SELECT r.incident_id, r.fingerprint, r.starts_at, r.ends_at, r.status, r.alertname, r.severity, r.host, r.labels,
       r.annotations, r.generator_url, r.source, r.sender, r.receiver, r.first_seen_at, r.last_seen_at,
       r.resolved_at, r.adjustments, r.suppressed, coalesce(r.silenced_by, '{}'), coalesce(r.inhibited_by, '{}'),
       r.suppressed_until, r.notifications
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
    incident_id bigint, fingerprint text, starts_at timestamptz, ends_at timestamptz, status text, alertname text,
    severity text, host text, labels jsonb, annotations jsonb, generator_url text, source text, sender text,
    receiver text, first_seen_at timestamptz, last_seen_at timestamptz, resolved_at timestamptz, adjustments jsonb,
    suppressed text, silenced_by text[], inhibited_by text[], suppressed_until timestamptz, notifications integer)
ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
    incident_id = EXCLUDED.incident_id, ends_at = EXCLUDED.ends_at, status = EXCLUDED.status,
    last_seen_at = EXCLUDED.last_seen_at, resolved_at = EXCLUDED.resolved_at, suppressed = EXCLUDED.suppressed,
    silenced_by = EXCLUDED.silenced_by, inhibited_by = EXCLUDED.inhibited_by,
    suppressed_until = EXCLUDED.suppressed_until, notifications = alerts.notifications + EXCLUDED.notifications;

-- name: refresh_alerts
-- Repeats of a known state: last_seen_at moves (never backwards) and the batch's notifications of the occurrence
-- (`notified`) are added to its count. A row neither changes is not written.
UPDATE alerts a SET last_seen_at = greatest(a.last_seen_at, k.seen), notifications = a.notifications + k.notified
FROM unnest(%(fps)s::text[], %(starts)s::timestamptz[], %(seen)s::timestamptz[], %(notified)s::int[])
    AS k(fp, s, seen, notified)
WHERE a.fingerprint = k.fp AND a.starts_at = k.s AND (a.last_seen_at < k.seen OR k.notified > 0);

-- name: insert_timeline
INSERT INTO incident_timeline (incident_id, at, kind, actor, detail)
SELECT r.incident_id, r.at, r.kind, r.actor, r.detail
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(incident_id bigint, at timestamptz, kind text, actor text, detail jsonb);

-- name: add_signature_tokens
-- The correlator's part of incident signatures (migration 0065, shared/signatures.py): for the incidents announced
-- by this batch (`announced`), their rule, group labels and every alert name they have held, read from the rows the
-- batch wrote before this statement (an incident held back by min_alerts may have gathered its first alerts in
-- earlier batches); for the batch's alerts of incidents announced before (`incident_ids`, `alertnames`, one pair per
-- incident and name), their names. A token an incident has already changes nothing.
INSERT INTO incident_signature_tokens (incident_id, token, kind, opened_at)
SELECT i.id, signature_token(t.kind, t.value), t.kind, i.opened_at
FROM incidents i
CROSS JOIN LATERAL (
    SELECT 'rule' AS kind, i.rule AS value
    UNION ALL
    SELECT 'label', l.key || '=' || l.value FROM jsonb_each_text(i.group_labels) AS l
    UNION ALL
    SELECT DISTINCT 'alert', a.alertname FROM alerts a WHERE a.incident_id = i.id
) t
WHERE i.id = ANY(%(announced)s::bigint[]) AND i.announced
UNION ALL
SELECT i.id, signature_token('alert', p.alertname), 'alert', i.opened_at
FROM unnest(%(incident_ids)s::bigint[], %(alertnames)s::text[]) AS p(incident_id, alertname)
JOIN incidents i ON i.id = p.incident_id AND i.announced
ON CONFLICT DO NOTHING;

-- name: insert_outbox
INSERT INTO outbox (message_id, exchange, routing_key, body)
SELECT r.message_id, r.exchange, r.routing_key, r.body
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(message_id uuid, exchange text, routing_key text, body jsonb)
RETURNING id;

-- name: request_enrichment
-- The enricher's work (migration 0070): per incident of the batch whose events ask for an enrichment, a message to
-- the enricher's queue only when no request of it stands, so an incident that grows in every batch of a storm is
-- one message until the enricher takes it, not one per batch. A standing request is renewed (and its message sent)
-- when the incident is to be enriched at once (`at_once`: new, reopened, resolved) or the request is older than
-- `renew_after_s` (its message was parked or purged). ON CONFLICT locks a standing request even when it leaves it
-- as it is, so the enricher's delete of it waits for this batch's commit and the state it then reads holds the
-- batch. Incident id order, the enricher's too: the two never wait for each other in a circle.
-- The message is the incident's last asking event of the batch (`event_ids`, already in the outbox: only the requests
-- made cost a copy) under an id of its own.
WITH wanted AS (
    SELECT w.incident_id, w.event_id
    FROM unnest(%(incident_ids)s::bigint[], %(event_ids)s::uuid[]) AS w(incident_id, event_id)
), asked AS (
    INSERT INTO enrichment_requests AS q (incident_id, requested_at)
    SELECT w.incident_id, now() FROM wanted w ORDER BY w.incident_id
    ON CONFLICT (incident_id) DO UPDATE SET requested_at = now()
    WHERE q.incident_id = ANY(%(at_once)s::bigint[])
       OR q.requested_at < now() - make_interval(secs => %(renew_after_s)s)
    RETURNING q.incident_id
), made AS (
    SELECT w.incident_id, gen_random_uuid() AS message_id, o.body
    FROM wanted w
    JOIN asked a ON a.incident_id = w.incident_id
    JOIN outbox o ON o.message_id = w.event_id
)
INSERT INTO outbox (message_id, exchange, routing_key, body)
SELECT m.message_id, %(exchange)s, %(routing_key)s, jsonb_set(m.body, '{id}', to_jsonb(m.message_id::text))
FROM made m
ORDER BY m.incident_id
RETURNING id;

-- name: claim_outbox
-- The next chunk after row `after`, in id order (for one incident that is the order of its changes: its batches
-- hold the group lock until they commit): rows up to `upto`, the newest this process committed, and leftovers
-- of any process (a crash, a broker outage). Rows another replica is publishing right now are skipped, not
-- published twice at once. `incident` groups the rows whose order matters.
SELECT id, message_id, exchange, routing_key, body, body #>> '{data,incident,key}' AS incident FROM outbox
WHERE published_at IS NULL AND id > %(after)s
  AND (id <= %(upto)s OR created_at < now() - make_interval(secs => %(older_than_s)s))
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: mark_published
-- When the broker confirmed them: this statement runs after the confirms, in the transaction that claimed the rows
-- before publishing them (whose now() is that claim).
UPDATE outbox SET published_at = statement_timestamp() WHERE id = ANY(%(ids)s);

-- name: stale_candidates
-- Suppressed alerts are no candidates while Alertmanager's suppression is trusted (a recent poll): Alertmanager does
-- not repeat them on purpose, and a thousand of them must not hide the alerts that really went quiet.
SELECT a.fingerprint, a.starts_at, i.group_key FROM alerts a JOIN incidents i ON i.id = a.incident_id
WHERE a.status = 'firing' AND a.last_seen_at < %(cutoff)s
  AND (a.suppressed IS NULL OR NOT %(suppression_trusted)s)
ORDER BY a.last_seen_at
LIMIT %(limit)s;

-- name: sweep_incidents
-- Incidents that may resolve after their grace, and flapping ones that have calmed down: fewer than `settle_below`
-- switches since `flap_cutoff` (lifecycle.settle_flapping's rule). Not every flapping incident: those still flapping
-- were locked and loaded at every sweep for nothing, and past `limit` of them they kept the quiet ones after them
-- from ever resolving.
SELECT id, group_key FROM incidents
WHERE (state <> 'resolved' AND quiet_since IS NOT NULL AND quiet_since < %(grace_cutoff)s AND NOT flapping)
   OR (flapping AND (SELECT count(*) FROM unnest(flap_times) AS f(at) WHERE f.at >= %(flap_cutoff)s) < %(settle_below)s)
ORDER BY id
LIMIT %(limit)s;

-- name: outbox_pending
SELECT count(*) AS n FROM outbox WHERE published_at IS NULL;

-- Retention (services/correlator/retention.py). Which rows go is decided in Python over what these read; every
-- transaction reads and deletes a bounded number of rows.

-- name: retention_now
SELECT now() AS now;

-- name: retention_limits
-- A retention transaction neither waits long for a lock nor runs long: past these it fails, and the next pass retries.
SELECT set_config('lock_timeout', '2s', true) AS lock_timeout, set_config('statement_timeout', '30s', true) AS timeout;

-- name: try_retention_lock
SELECT pg_try_advisory_xact_lock(%(key)s) AS got;

-- name: expired_incident_candidates
-- Oldest resolve first, through incidents_resolved_at.
SELECT id, key, group_key, state, opened_at, resolved_at FROM incidents
WHERE state = 'resolved' AND resolved_at < %(cutoff)s AND opened_at < %(cutoff)s
ORDER BY resolved_at, id
LIMIT %(limit)s;

-- name: try_group_locks
-- The correlator's per-group locks, without waiting: a group a batch holds right now is left for the next pass, and
-- retention, never waiting for one, never deadlocks with a batch.
SELECT k AS lock_id, pg_try_advisory_xact_lock(k) AS got FROM unnest(%(keys)s::bigint[]) AS k;

-- name: incidents_for_retention
SELECT id, key, group_key, state, opened_at, resolved_at FROM incidents WHERE id = ANY(%(ids)s);

-- name: incident_row_counts
-- Rows under each incident, besides its own.
SELECT i.id,
       (SELECT count(*) FROM incident_timeline t WHERE t.incident_id = i.id)
     + (SELECT count(*) FROM enrichments e WHERE e.incident_id = i.id)
     + (SELECT count(*) FROM report_sources s WHERE s.incident_id = i.id)
     + (SELECT count(*) FROM reports r WHERE r.incident_id = i.id)
     + (SELECT count(*) FROM alerts a WHERE a.incident_id = i.id)
     + (SELECT count(*) FROM incident_signature_tokens g WHERE g.incident_id = i.id) AS rows
FROM unnest(%(ids)s::bigint[]) AS i(id);

-- name: delete_incident_timeline
DELETE FROM incident_timeline WHERE id IN (
    SELECT id FROM incident_timeline WHERE incident_id = ANY(%(ids)s) LIMIT %(limit)s);

-- name: delete_enrichments
DELETE FROM enrichments WHERE incident_id IN (
    SELECT incident_id FROM enrichments WHERE incident_id = ANY(%(ids)s) LIMIT %(limit)s);

-- name: delete_report_sources
DELETE FROM report_sources WHERE incident_id IN (
    SELECT incident_id FROM report_sources WHERE incident_id = ANY(%(ids)s) LIMIT %(limit)s);

-- name: delete_reports
DELETE FROM reports WHERE (incident_id, version, format) IN (
    SELECT incident_id, version, format FROM reports WHERE incident_id = ANY(%(ids)s) LIMIT %(limit)s);

-- name: delete_signature_tokens
DELETE FROM incident_signature_tokens WHERE (incident_id, token) IN (
    SELECT incident_id, token FROM incident_signature_tokens WHERE incident_id = ANY(%(ids)s) LIMIT %(limit)s);

-- name: delete_alerts
DELETE FROM alerts WHERE id IN (
    SELECT id FROM alerts WHERE incident_id = ANY(%(ids)s) LIMIT %(limit)s);

-- name: delete_incidents
DELETE FROM incidents WHERE id = ANY(%(ids)s) RETURNING key;

-- name: record_retention_horizon
-- In the transaction of each deletion: no incident opened at or after `deleted_before` was deleted. Never moves back.
INSERT INTO retention_horizon (deleted_before) VALUES (%(cutoff)s)
ON CONFLICT (singleton) DO UPDATE
SET deleted_before = greatest(retention_horizon.deleted_before, EXCLUDED.deleted_before), updated_at = now();

-- name: outbox_oldest
-- Rows after `after` in id order, which is the order they were written in (through the primary key).
SELECT id, created_at, published_at FROM outbox WHERE id > %(after)s ORDER BY id LIMIT %(limit)s;

-- name: delete_outbox
DELETE FROM outbox WHERE id = ANY(%(ids)s);

-- name: processed_oldest
SELECT consumer, message_id, processed_at FROM processed_messages
WHERE processed_at < %(cutoff)s
ORDER BY processed_at
LIMIT %(limit)s;

-- name: delete_ended_silences
DELETE FROM silences WHERE id IN (
    SELECT id FROM silences WHERE ends_at < %(cutoff)s ORDER BY ends_at LIMIT %(limit)s
);

-- name: delete_processed
DELETE FROM processed_messages p
USING unnest(%(consumers)s::text[], %(ids)s::uuid[]) AS k(consumer, message_id)
WHERE p.consumer = k.consumer AND p.message_id = k.message_id;

-- Alertmanager's silences and inhibitions (services/correlator/silences.py).

-- name: try_poll_lock
SELECT pg_try_advisory_xact_lock(%(key)s) AS got;

-- name: suppression_polled_at
SELECT polled_at FROM alertmanager_poll;

-- name: record_poll
INSERT INTO alertmanager_poll (polled_at) VALUES (%(at)s)
ON CONFLICT (singleton) DO UPDATE SET polled_at = greatest(alertmanager_poll.polled_at, EXCLUDED.polled_at);

-- name: upsert_silences
INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment, state, source, updated_at)
SELECT r.id, r.matchers, r.starts_at, r.ends_at, r.created_by, r.comment, r.state, r.source, now()
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
    id text, matchers jsonb, starts_at timestamptz, ends_at timestamptz, created_by text, comment text, state text,
    source text)
ON CONFLICT (id) DO UPDATE SET
    matchers = EXCLUDED.matchers, starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at,
    created_by = EXCLUDED.created_by, comment = EXCLUDED.comment, state = EXCLUDED.state, source = EXCLUDED.source,
    updated_at = now()
WHERE (silences.matchers, silences.starts_at, silences.ends_at, silences.created_by, silences.comment, silences.state)
   IS DISTINCT FROM (EXCLUDED.matchers, EXCLUDED.starts_at, EXCLUDED.ends_at, EXCLUDED.created_by, EXCLUDED.comment,
                     EXCLUDED.state);

-- name: suppression_candidates
-- The newest firing or stale occurrence of each fingerprint Alertmanager holds back, and every occurrence Vigil still
-- records as suppressed: the poller compares both with Alertmanager's answer.
SELECT n.fingerprint, n.starts_at, n.status, n.suppressed, n.silenced_by, n.inhibited_by, n.suppressed_until,
       i.group_key
FROM unnest(%(fps)s::text[]) AS f(fp)
CROSS JOIN LATERAL (
    SELECT a.* FROM alerts a WHERE a.fingerprint = f.fp ORDER BY a.starts_at DESC LIMIT 1
) n
JOIN incidents i ON i.id = n.incident_id
WHERE n.status IN ('firing', 'stale')
UNION
SELECT a.fingerprint, a.starts_at, a.status, a.suppressed, a.silenced_by, a.inhibited_by, a.suppressed_until,
       i.group_key
FROM alerts a JOIN incidents i ON i.id = a.incident_id
WHERE a.suppressed IS NOT NULL AND a.status IN ('firing', 'stale');

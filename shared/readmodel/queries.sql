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

-- name: similar_incidents
-- Up to `limit` earlier announced incidents whose signatures (migration 0065, shared/signatures.py) are closest to
-- incident `incident_id`'s, closest first, each with its last comment (a comment, or the words given with an
-- acknowledgement, a resolve or a reopen). "Earlier": opened before it (at the same instant, stored before it).
--
-- Closeness is the weighted Jaccard index of the two token sets: the weight of the tokens both hold over the weight
-- of those either holds, a token weighing its kind's weight (`kinds`, `weights`: shared.signatures.KIND_WEIGHTS).
-- Ties go to the more recent incident, then the higher id: the same data always gives the same list.
--
-- Never a scan of every incident: candidates are found per token of the incident (`probes`: the heaviest
-- `max_probes` of them, never its rule, which nearly every incident shares and which alone makes nothing similar),
-- each giving the `per_token` most recent earlier incidents holding it, one bounded range of
-- incident_signature_tokens_recent. At most max_probes * per_token candidates are scored, through the primary key.
-- The answer is exact whenever each token has at most `per_token` earlier incidents; past that, among incidents
-- that share only such common tokens, the most recent ones are considered, and they are the ones the tie-break
-- prefers. An incident found through a rarer token (a host, a log template) is always scored.
WITH weights AS (
    SELECT w.kind, w.weight FROM unnest(%(kinds)s::text[], %(weights)s::integer[]) AS w(kind, weight)
), target AS (
    SELECT i.id, i.opened_at FROM incidents i WHERE i.id = %(incident_id)s
), own AS (
    SELECT s.token, s.kind, w.weight
    FROM incident_signature_tokens s JOIN weights w ON w.kind = s.kind
    WHERE s.incident_id = %(incident_id)s
), probes AS (
    SELECT o.token FROM own o
    WHERE o.kind <> 'rule'
    ORDER BY o.weight DESC, o.token
    LIMIT %(max_probes)s
), candidates AS (
    SELECT DISTINCT found.incident_id
    FROM probes p
    CROSS JOIN target t
    CROSS JOIN LATERAL (
        SELECT s.incident_id FROM incident_signature_tokens s
        WHERE s.token = p.token AND (s.opened_at, s.incident_id) < (t.opened_at, t.id)
        ORDER BY s.opened_at DESC, s.incident_id DESC
        LIMIT %(per_token)s
    ) found
), scored AS (
    SELECT s.incident_id,
           coalesce(sum(w.weight) FILTER (WHERE o.token IS NOT NULL), 0) AS shared,
           sum(w.weight) AS theirs
    FROM candidates c
    JOIN incident_signature_tokens s ON s.incident_id = c.incident_id
    JOIN weights w ON w.kind = s.kind
    LEFT JOIN own o ON o.token = s.token
    GROUP BY s.incident_id
), top AS (
    SELECT i.id, i.key, i.title, i.state, i.severity, i.rule, i.opened_at, i.acknowledged_at, i.acknowledged_by,
           i.resolved_at, i.resolved_by, i.maintenance, sc.shared, u.either,
           -- numeric, exact enough that different fractions of these small integers never compare equal
           sc.shared::numeric / u.either AS closeness
    FROM scored sc
    CROSS JOIN LATERAL (SELECT sc.theirs + (SELECT sum(o.weight) FROM own o) - sc.shared AS either) u
    JOIN incidents i ON i.id = sc.incident_id AND i.announced
    ORDER BY closeness DESC, i.opened_at DESC, i.id DESC
    LIMIT %(limit)s
)
SELECT top.key, top.title, top.state, top.severity, top.rule, top.opened_at, top.acknowledged_at,
       top.acknowledged_by, top.resolved_at, top.resolved_by, top.maintenance, top.shared, top.either,
       c.at AS comment_at, c.actor AS comment_by, c.detail ->> 'comment' AS comment
FROM top
LEFT JOIN LATERAL (
    -- Through incident_timeline_comments (the same predicate), however long the timeline.
    SELECT t.at, t.actor, t.detail FROM incident_timeline t
    WHERE t.incident_id = top.id
      AND t.kind IN ('comment', 'incident_acknowledged', 'incident_resolved', 'incident_reopened')
      AND (t.detail ->> 'comment') <> ''
    ORDER BY t.at DESC, t.id DESC
    LIMIT 1
) c ON true
ORDER BY top.closeness DESC, top.opened_at DESC, top.id DESC

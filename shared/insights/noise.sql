-- Noise and alert quality over a period (shared/insights/noise.py explains every figure): the audit runs these in its
-- REPEATABLE READ snapshot, the insights page on its own connection.
--
-- A period's groups: the incidents opened in [since, until), announced or not. An announced one is an incident (the
-- audit's); one never announced is a group held back by its rule's min_alerts. Maintenance incidents and groups (opened
-- by alerts inside a maintenance window) are left out of every figure but the funnel's `maintenance_*`, as from the
-- audit's response times: planned work's alerts are expected, not noise to tune.
-- An occurrence belongs to the period of its incident; its notifications (alerts.notifications, migration 0066) are
-- every notification Vigil received for it, whenever they came.
-- Time firing of an occurrence: from starts_at to its end (ends_at as sent with the resolve, else when the resolve
-- came); one not resolved counts up to a lower bound: a stale one (Alertmanager stopped repeating it, no resolve came)
-- up to when it was last seen, a firing one up to now(), the snapshot's time. Never below zero.
-- Acknowledged: acknowledged_at is set, or the timeline says it was acknowledged once (a reopen clears acknowledged_at).
-- Flapped: flapping is set, or the timeline says it started flapping once (the flag clears when it calms down).
-- Seconds come from date_part (float8), not extract (numeric since PostgreSQL 14): over a year's occurrences the numeric
-- arithmetic was a tenth of the query. Text sorts by bytes (COLLATE "C"), as in the audit. Aggregates over one join of the period's incidents and their
-- alerts, no per-incident work; no CTE is read twice: a materialised CTE's row count is a guess, and a bad guess made
-- PostgreSQL JIT-compile a 100,000-incident period's query for longer than it then ran.

-- name: noise_funnel
SELECT g.incidents, g.held_back, g.maintenance_incidents, g.maintenance_held_back,
       o.notifications, o.occurrences, o.held_back_occurrences, o.held_back_notifications,
       o.maintenance_occurrences, o.maintenance_notifications
FROM (
    SELECT count(*) FILTER (WHERE i.announced AND i.maintenance IS NULL) AS incidents,
           count(*) FILTER (WHERE NOT i.announced AND i.maintenance IS NULL) AS held_back,
           count(*) FILTER (WHERE i.announced AND i.maintenance IS NOT NULL) AS maintenance_incidents,
           count(*) FILTER (WHERE NOT i.announced AND i.maintenance IS NOT NULL) AS maintenance_held_back
    FROM incidents i
    WHERE i.opened_at >= %(since)s AND i.opened_at < %(until)s
) g CROSS JOIN (
    SELECT coalesce(sum(a.notifications) FILTER (WHERE i.maintenance IS NULL), 0)::bigint AS notifications,
           count(*) FILTER (WHERE i.maintenance IS NULL) AS occurrences,
           count(*) FILTER (WHERE NOT i.announced AND i.maintenance IS NULL) AS held_back_occurrences,
           coalesce(sum(a.notifications) FILTER (WHERE NOT i.announced AND i.maintenance IS NULL), 0)::bigint
               AS held_back_notifications,
           count(*) FILTER (WHERE i.maintenance IS NOT NULL) AS maintenance_occurrences,
           coalesce(sum(a.notifications) FILTER (WHERE i.maintenance IS NOT NULL), 0)::bigint
               AS maintenance_notifications
    FROM alerts a JOIN incidents i ON i.id = a.incident_id
    WHERE i.opened_at >= %(since)s AND i.opened_at < %(until)s
) o;

-- name: noise_by_alert
-- Per alert name, the noisiest first (most notifications, then most occurrences, then by name); `top` rows at most
-- (NULL: all). With `top`, the names are chosen first from their counts alone (top_names), and only theirs are
-- measured. Over each name's occurrences ordered by (announced, opened_at, incident): `first` marks the first
-- occurrence of each group, so the group-level counts need no DISTINCT; `after_previous` is how long after the previous
-- incident of the name this one opened (held-back groups apart). `rule`: the rule most of its groups fell under (the
-- first by name among equals). `single_alert`: its incidents that held one occurrence in all. `clustered`: its
-- incidents that opened at most `cluster_s` seconds after another of its incidents.
WITH top_names AS (
    SELECT a.alertname
    FROM alerts a JOIN incidents i ON i.id = a.incident_id
    WHERE %(top)s::int IS NOT NULL
      AND i.opened_at >= %(since)s AND i.opened_at < %(until)s AND i.maintenance IS NULL
    GROUP BY a.alertname
    ORDER BY sum(a.notifications) DESC, count(*) DESC, a.alertname COLLATE "C"
    LIMIT %(top)s
),
occurrences AS (
    SELECT a.alertname, a.incident_id, a.notifications, a.host, a.status,
           greatest(date_part('epoch', CASE a.status WHEN 'resolved' THEN coalesce(a.ends_at, a.resolved_at)
                                                     WHEN 'stale' THEN a.last_seen_at
                                                     ELSE now() END - a.starts_at), 0)::float8 AS firing_s,
           i.rule, i.announced, i.alert_count, i.opened_at, i.state, i.acknowledged_at, i.flapping,
           a.incident_id IS DISTINCT FROM lag(a.incident_id) OVER w AS first,
           i.opened_at - lag(i.opened_at) OVER w AS after_previous
    FROM alerts a JOIN incidents i ON i.id = a.incident_id
    WHERE i.opened_at >= %(since)s AND i.opened_at < %(until)s AND i.maintenance IS NULL
      AND (%(top)s::int IS NULL OR a.alertname IN (SELECT t.alertname FROM top_names t))
    WINDOW w AS (PARTITION BY a.alertname, i.announced ORDER BY i.opened_at, a.incident_id)
),
flagged AS (
    SELECT o.*,
           CASE WHEN o.first AND o.announced AND o.state = 'resolved' AND o.acknowledged_at IS NULL
                THEN NOT EXISTS (SELECT FROM incident_timeline t
                                 WHERE t.incident_id = o.incident_id AND t.kind = 'incident_acknowledged')
                ELSE false END AS unacknowledged,
           CASE WHEN o.first AND o.announced
                THEN o.flapping OR EXISTS (SELECT FROM incident_timeline t
                                           WHERE t.incident_id = o.incident_id AND t.kind = 'flapping_started')
                ELSE false END AS flapped
    FROM occurrences o
)
SELECT f.alertname,
       mode() WITHIN GROUP (ORDER BY f.rule COLLATE "C") FILTER (WHERE f.first) AS rule,
       sum(f.notifications)::bigint AS notifications, count(*) AS occurrences,
       count(*) FILTER (WHERE f.first AND f.announced) AS incidents,
       count(*) FILTER (WHERE f.first AND NOT f.announced) AS held_back,
       count(*) FILTER (WHERE f.unacknowledged) AS unacknowledged,
       count(*) FILTER (WHERE f.flapped) AS flapping,
       count(*) FILTER (WHERE f.first AND f.announced AND f.alert_count = 1) AS single_alert,
       count(*) FILTER (WHERE f.first AND f.announced AND f.after_previous <= make_interval(secs => %(cluster_s)s))
           AS clustered,
       count(DISTINCT f.host) FILTER (WHERE f.host <> '') AS hosts,
       count(*) FILTER (WHERE f.status <> 'resolved') AS not_resolved,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY f.firing_s) AS median_firing_s
FROM flagged f
GROUP BY f.alertname
ORDER BY notifications DESC, occurrences DESC, f.alertname COLLATE "C"
LIMIT %(top)s;

-- name: noise_by_rule
-- Per correlation rule, the noisiest first; the same figures as noise_by_alert (a group falls under one rule).
WITH by_occurrence AS (
    SELECT i.rule, sum(a.notifications)::bigint AS notifications, count(*) AS occurrences,
           count(*) FILTER (WHERE a.status <> 'resolved') AS not_resolved,
           percentile_cont(0.5) WITHIN GROUP (
               ORDER BY greatest(date_part('epoch', CASE a.status WHEN 'resolved' THEN coalesce(a.ends_at, a.resolved_at)
                                                                  WHEN 'stale' THEN a.last_seen_at
                                                                  ELSE now() END - a.starts_at), 0)::float8
           ) AS median_firing_s,
           count(DISTINCT a.host) FILTER (WHERE a.host <> '') AS hosts
    FROM alerts a JOIN incidents i ON i.id = a.incident_id
    WHERE i.opened_at >= %(since)s AND i.opened_at < %(until)s AND i.maintenance IS NULL
    GROUP BY i.rule
),
groups AS (
    SELECT i.rule, i.announced, i.alert_count,
           CASE WHEN i.announced AND i.state = 'resolved' AND i.acknowledged_at IS NULL
                THEN NOT EXISTS (SELECT FROM incident_timeline t
                                 WHERE t.incident_id = i.id AND t.kind = 'incident_acknowledged')
                ELSE false END AS unacknowledged,
           CASE WHEN i.announced
                THEN i.flapping OR EXISTS (SELECT FROM incident_timeline t
                                           WHERE t.incident_id = i.id AND t.kind = 'flapping_started')
                ELSE false END AS flapped,
           i.opened_at - lag(i.opened_at) OVER (PARTITION BY i.rule, i.announced ORDER BY i.opened_at, i.id)
               AS after_previous
    FROM incidents i
    WHERE i.opened_at >= %(since)s AND i.opened_at < %(until)s AND i.maintenance IS NULL
),
by_group AS (
    SELECT g.rule,
           count(*) FILTER (WHERE g.announced) AS incidents,
           count(*) FILTER (WHERE NOT g.announced) AS held_back,
           count(*) FILTER (WHERE g.unacknowledged) AS unacknowledged,
           count(*) FILTER (WHERE g.flapped) AS flapping,
           count(*) FILTER (WHERE g.announced AND g.alert_count = 1) AS single_alert,
           count(*) FILTER (WHERE g.announced AND g.after_previous <= make_interval(secs => %(cluster_s)s))
               AS clustered
    FROM groups g
    GROUP BY g.rule
)
SELECT g.rule, coalesce(b.notifications, 0)::bigint AS notifications, coalesce(b.occurrences, 0) AS occurrences,
       g.incidents, g.held_back, g.unacknowledged, g.flapping, g.single_alert, g.clustered,
       coalesce(b.hosts, 0) AS hosts, coalesce(b.not_resolved, 0) AS not_resolved, b.median_firing_s
FROM by_group g LEFT JOIN by_occurrence b ON b.rule = g.rule
ORDER BY notifications DESC, occurrences DESC, g.rule COLLATE "C"
LIMIT %(top)s;

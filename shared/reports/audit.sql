-- The period audit, computed by PostgreSQL: services/reporter/audit.py runs these in one REPEATABLE READ snapshot and
-- reads each table through a server-side cursor, a chunk at a time, so the process holds one chunk, never the period.
-- A period's incidents: announced, opened in [since, until). Text sorts by bytes (COLLATE "C"), whatever the
-- database's collation, so the order is the same on every server. Durations are float seconds.

-- name: audit_summary
-- as_of is the snapshot's time (now() is the transaction's start). avg and percentile_cont skip NULLs: the means and
-- p90s (linear interpolation between closest ranks) are over the acknowledged or resolved incidents only, leaving out
-- maintenance incidents (opened by alerts inside a maintenance window): planned work is not a response time.
WITH period AS (
    SELECT i.state,
           i.maintenance IS NOT NULL AS maintenance,
           CASE WHEN i.maintenance IS NULL THEN extract(epoch FROM i.acknowledged_at - i.opened_at)::float8 END AS tta_s,
           CASE WHEN i.maintenance IS NULL THEN extract(epoch FROM i.resolved_at - i.opened_at)::float8 END AS ttr_s,
           i.acknowledged_at IS NOT NULL AND EXISTS (
               SELECT FROM incident_timeline t WHERE t.incident_id = i.id AND t.kind = 'incident_acknowledged'
                 AND t.detail ->> 'via' = 'silence') AS ack_by_silence
    FROM incidents i
    WHERE i.announced AND i.opened_at >= %(since)s AND i.opened_at < %(until)s
)
SELECT now() AS as_of,
       count(*) AS incidents,
       count(*) FILTER (WHERE p.state <> 'resolved') AS still_open,
       count(*) FILTER (WHERE p.maintenance) AS maintenance,
       count(p.tta_s) AS acknowledged,
       count(*) FILTER (WHERE p.ack_by_silence) AS acknowledged_by_silence,
       avg(p.tta_s) AS tta_mean_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY p.tta_s) AS tta_p90_s,
       count(p.ttr_s) AS resolved,
       avg(p.ttr_s) AS ttr_mean_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY p.ttr_s) AS ttr_p90_s
FROM period p;

-- name: audit_incidents
-- Every incident of the period, in the order it opened; `maintenance` the window's name (its TTA and TTR are shown,
-- but not counted in the summary's MTTA and MTTR).
SELECT i.key, i.title, i.state, i.severity, i.rule, array_to_string(i.hosts, ', ') AS hosts, i.alert_count,
       i.flapping, i.maintenance, i.opened_at, i.acknowledged_at, i.acknowledged_by, i.resolved_at, i.resolved_by,
       extract(epoch FROM i.acknowledged_at - i.opened_at)::float8 AS tta_s,
       extract(epoch FROM i.resolved_at - i.opened_at)::float8 AS ttr_s,
       -- 'silence': a silence in Alertmanager acknowledged it (VIGIL_SILENCE_ACKNOWLEDGES), not a person in Vigil.
       CASE WHEN i.acknowledged_at IS NOT NULL AND EXISTS (
                SELECT FROM incident_timeline t WHERE t.incident_id = i.id AND t.kind = 'incident_acknowledged'
                  AND t.detail ->> 'via' = 'silence') THEN 'silence' END AS acknowledged_via
FROM incidents i
WHERE i.announced AND i.opened_at >= %(since)s AND i.opened_at < %(until)s
ORDER BY i.opened_at, i.id;

-- name: audit_still_open
-- The period's incidents not resolved as of the snapshot, oldest first, with how long they have been open.
SELECT i.key, i.title, i.state, i.severity, array_to_string(i.hosts, ', ') AS hosts, i.opened_at, i.acknowledged_at,
       extract(epoch FROM now() - i.opened_at)::float8 AS age_s
FROM incidents i
WHERE i.announced AND i.opened_at >= %(since)s AND i.opened_at < %(until)s AND i.state <> 'resolved'
ORDER BY i.opened_at, i.key COLLATE "C";

-- name: audit_by_severity
-- Most severe first (ranks from shared/contracts.py, passed in; an unknown severity ranks as `default_rank`).
SELECT i.severity, count(*) AS incidents, count(*) FILTER (WHERE i.state <> 'resolved') AS open
FROM incidents i
WHERE i.announced AND i.opened_at >= %(since)s AND i.opened_at < %(until)s
GROUP BY i.severity
ORDER BY coalesce(
             (SELECT r.rank FROM unnest(%(rank_names)s::text[], %(rank_values)s::int[]) AS r (name, rank)
              WHERE r.name = i.severity),
             %(default_rank)s::int) DESC,
         i.severity COLLATE "C";

-- name: audit_by_alertname
-- Alert occurrences per alert name, the incidents they are in, and the hosts they fired on.
SELECT a.alertname, count(*) AS alerts, count(DISTINCT a.incident_id) AS incidents,
       count(DISTINCT a.host) FILTER (WHERE a.host <> '') AS hosts
FROM alerts a JOIN incidents i ON i.id = a.incident_id
WHERE i.announced AND i.opened_at >= %(since)s AND i.opened_at < %(until)s
GROUP BY a.alertname
ORDER BY alerts DESC, a.alertname COLLATE "C";

-- name: audit_by_host
-- Per host: the incidents naming it, and the alerts that fired on it (alerts without a host count nowhere here).
WITH period AS (
    SELECT i.id, i.hosts
    FROM incidents i
    WHERE i.announced AND i.opened_at >= %(since)s AND i.opened_at < %(until)s
),
host_incidents AS (
    SELECT h.host, count(DISTINCT p.id) AS incidents
    FROM period p CROSS JOIN LATERAL unnest(p.hosts) AS h (host)
    GROUP BY h.host
),
host_alerts AS (
    SELECT a.host, count(*) AS alerts
    FROM alerts a JOIN period p ON p.id = a.incident_id
    WHERE a.host <> ''
    GROUP BY a.host
)
SELECT coalesce(hi.host, ha.host) AS host, coalesce(hi.incidents, 0) AS incidents, coalesce(ha.alerts, 0) AS alerts
FROM host_incidents hi FULL JOIN host_alerts ha ON ha.host = hi.host
ORDER BY incidents DESC, alerts DESC, coalesce(hi.host, ha.host) COLLATE "C" NULLS FIRST;

-- name: audit_noisy
-- The alert names, per host, with the most occurrences.
SELECT a.alertname, coalesce(a.host, '') AS host, count(*) AS alerts, count(DISTINCT a.incident_id) AS incidents
FROM alerts a JOIN incidents i ON i.id = a.incident_id
WHERE i.announced AND i.opened_at >= %(since)s AND i.opened_at < %(until)s
GROUP BY a.alertname, coalesce(a.host, '')
ORDER BY alerts DESC, a.alertname COLLATE "C", coalesce(a.host, '') COLLATE "C"
LIMIT %(top)s;

-- name: audit_flapping
-- Alert series (fingerprints) that fired at least `min_occurrences` times in the period's incidents, or fired in an
-- incident the correlator marked flapping; named after the series' first occurrence.
WITH series AS (
    SELECT a.fingerprint,
           (array_agg(a.alertname ORDER BY a.starts_at, a.id))[1] AS alertname,
           (array_agg(coalesce(a.host, '') ORDER BY a.starts_at, a.id))[1] AS host,
           count(*) AS occurrences,
           count(DISTINCT a.incident_id) AS incidents,
           bool_or(i.flapping) AS marked_flapping
    FROM alerts a JOIN incidents i ON i.id = a.incident_id
    WHERE i.announced AND i.opened_at >= %(since)s AND i.opened_at < %(until)s
    GROUP BY a.fingerprint
)
SELECT s.alertname, s.host, s.fingerprint, s.occurrences, s.incidents, s.marked_flapping
FROM series s
WHERE s.occurrences >= %(min_occurrences)s OR s.marked_flapping
ORDER BY s.occurrences DESC, s.alertname COLLATE "C", s.fingerprint COLLATE "C";

-- name: audit_retention_horizon
-- Incidents resolved and opened before it may have been deleted by retention (services/correlator/retention.py);
-- no row: retention has deleted nothing yet.
SELECT deleted_before FROM retention_horizon;

-- name: audit_response_by_severity
-- Response times per severity, most severe first (ranks as in audit_by_severity, matched case-insensitively and an
-- empty severity ranking as 'none', like shared.contracts.severity_rank). Maintenance incidents are left out entirely,
-- as from the summary's MTTA/MTTR: planned work is not a response time. Median and p90 by linear interpolation
-- between closest ranks; percentile_cont skips NULLs, so each is over the incidents acknowledged (or resolved).
WITH period AS (
    SELECT i.severity,
           extract(epoch FROM i.acknowledged_at - i.opened_at)::float8 AS tta_s,
           extract(epoch FROM i.resolved_at - i.opened_at)::float8 AS ttr_s
    FROM incidents i
    WHERE i.announced AND i.opened_at >= %(since)s AND i.opened_at < %(until)s AND i.maintenance IS NULL
)
SELECT p.severity, count(*) AS incidents,
       count(p.tta_s) AS acknowledged,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY p.tta_s) AS tta_median_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY p.tta_s) AS tta_p90_s,
       count(p.ttr_s) AS resolved,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY p.ttr_s) AS ttr_median_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY p.ttr_s) AS ttr_p90_s
FROM period p
GROUP BY p.severity
ORDER BY coalesce(
             (SELECT r.rank FROM unnest(%(rank_names)s::text[], %(rank_values)s::int[]) AS r (name, rank)
              WHERE r.name = coalesce(nullif(lower(p.severity), ''), 'none')),
             %(default_rank)s::int) DESC,
         p.severity COLLATE "C";

-- name: audit_response_by_rule
-- Response times per correlation rule, by rule name; otherwise as audit_response_by_severity.
WITH period AS (
    SELECT i.rule,
           extract(epoch FROM i.acknowledged_at - i.opened_at)::float8 AS tta_s,
           extract(epoch FROM i.resolved_at - i.opened_at)::float8 AS ttr_s
    FROM incidents i
    WHERE i.announced AND i.opened_at >= %(since)s AND i.opened_at < %(until)s AND i.maintenance IS NULL
)
SELECT p.rule, count(*) AS incidents,
       count(p.tta_s) AS acknowledged,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY p.tta_s) AS tta_median_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY p.tta_s) AS tta_p90_s,
       count(p.ttr_s) AS resolved,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY p.ttr_s) AS ttr_median_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY p.ttr_s) AS ttr_p90_s
FROM period p
GROUP BY p.rule
ORDER BY p.rule COLLATE "C";

-- name: audit_target_candidates
-- The period's incidents (maintenance left out, as from the response times) of the severities that have a target,
-- in the order they opened: shared.reports.response_targets decides, row by row as they stream, which missed one.
SELECT i.key, i.severity, i.rule, i.opened_at, i.acknowledged_at, i.resolved_at
FROM incidents i
WHERE i.announced AND i.opened_at >= %(since)s AND i.opened_at < %(until)s AND i.maintenance IS NULL
  AND coalesce(nullif(lower(i.severity), ''), 'none') = ANY (%(severities)s::text[])
ORDER BY i.opened_at, i.id;

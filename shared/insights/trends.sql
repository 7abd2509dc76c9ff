-- Incidents and response times over a period, per day or per week (UTC), for the insights page.
-- Which incidents: announced, opened in [since, until), as in the audit (shared/reports/audit.sql). `bucket` is the 1-based
-- index into %(starts)s, the buckets' starts (width_bucket's binary search: a tenth of date_trunc's time zone work). Maintenance incidents count as incidents but are left out of MTTA and MTTR,
-- as in the audit: planned work is not a response time. Percentiles interpolate linearly between closest ranks.

-- name: incidents_per_bucket
SELECT width_bucket(i.opened_at, %(starts)s::timestamptz[]) AS bucket, i.severity, count(*) AS incidents
FROM incidents i
WHERE i.announced AND i.opened_at >= %(since)s AND i.opened_at < %(until)s
GROUP BY 1, 2;

-- name: response_per_bucket
-- One row per bucket and one (bucket NULL) for the whole period. The percentiles sort intervals, converted to seconds
-- once per bucket: extracting epoch seconds of every row first (as numeric) took most of the query's time.
SELECT b.bucket, b.incidents, b.acknowledged, b.resolved,
       extract(epoch FROM b.tta_median)::float8 AS tta_median_s, extract(epoch FROM b.tta_p90)::float8 AS tta_p90_s,
       extract(epoch FROM b.ttr_median)::float8 AS ttr_median_s, extract(epoch FROM b.ttr_p90)::float8 AS ttr_p90_s
FROM (
    SELECT width_bucket(i.opened_at, %(starts)s::timestamptz[]) AS bucket,
           count(*) AS incidents,
           count(i.acknowledged_at) AS acknowledged,
           count(i.resolved_at) AS resolved,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY i.acknowledged_at - i.opened_at) AS tta_median,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY i.acknowledged_at - i.opened_at) AS tta_p90,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY i.resolved_at - i.opened_at) AS ttr_median,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY i.resolved_at - i.opened_at) AS ttr_p90
    FROM incidents i
    WHERE i.announced AND i.maintenance IS NULL AND i.opened_at >= %(since)s AND i.opened_at < %(until)s
    GROUP BY GROUPING SETS ((width_bucket(i.opened_at, %(starts)s::timestamptz[])), ())
) b;

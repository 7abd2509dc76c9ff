-- Reads of the stored reports (shared.reports.stored); the reporter is their only writer. Values are always bound
-- parameters.

-- name: newest_report
-- The incident's newest version: its content in the format asked for (NULL when that version has none: the reporter
-- stores no XLSX) and the sha256 of its JSON rendering (NULL: stored before there was one).
SELECT v.version, f.content, j.sha256 AS json_sha256
FROM incidents i
CROSS JOIN LATERAL (SELECT max(version) AS version FROM reports WHERE incident_id = i.id) v
LEFT JOIN reports f ON f.incident_id = i.id AND f.version = v.version AND f.format = %(format)s
LEFT JOIN reports j ON j.incident_id = i.id AND j.version = v.version AND j.format = 'json'
WHERE i.key = %(key)s AND v.version IS NOT NULL

-- name: report_content
SELECT r.content
FROM reports r JOIN incidents i ON i.id = r.incident_id
WHERE i.key = %(key)s AND r.version = %(version)s AND r.format = %(format)s

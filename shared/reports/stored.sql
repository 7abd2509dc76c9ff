-- Reads of the stored reports (shared.reports.stored); the reporter is their only writer. Values are always bound
-- parameters.

-- name: latest_report_content
SELECT r.version, r.content, r.sha256, r.created_at
FROM reports r JOIN incidents i ON i.id = r.incident_id
WHERE i.key = %(key)s AND r.format = %(format)s
ORDER BY r.version DESC
LIMIT 1

-- The correlator's reads of the maintenance windows made through the web API (services/correlator/maintenance.py).

-- name: maintenance_windows
-- Weekly windows, and ranges not over before the batch's earliest alert started. A handful of rows.
SELECT id, definition FROM maintenance_windows
WHERE ends_at IS NULL OR ends_at > %(since)s
ORDER BY id;

-- Maintenance windows made through the web API (services/web/maintenance.py); the correlator reads them per batch.
-- Rows are created and deleted, never updated.

-- name: maintenance_list
SELECT id, name, definition, created_by, created_at FROM maintenance_windows ORDER BY id;

-- name: maintenance_create
-- A name already taken answers no row (the API says 409).
INSERT INTO maintenance_windows (name, definition, ends_at, created_by)
VALUES (%(name)s, %(definition)s, %(ends_at)s, %(created_by)s)
ON CONFLICT (name) DO NOTHING
RETURNING id, name, definition, created_by, created_at;

-- name: maintenance_delete
DELETE FROM maintenance_windows WHERE id = %(id)s RETURNING id;

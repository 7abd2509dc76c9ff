-- Rendered incident reports, every version kept for audits.
CREATE TABLE reports (
    incident_id  bigint NOT NULL REFERENCES incidents (id),
    version      integer NOT NULL,
    format       text NOT NULL CHECK (format IN ('md', 'xlsx', 'json')),
    content      bytea NOT NULL,
    sha256       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (incident_id, version, format)
);

-- The enricher's latest context per incident. Re-enrichment replaces the row and bumps `version`.
CREATE TABLE enrichments (
    incident_id  bigint PRIMARY KEY REFERENCES incidents (id),
    version      integer NOT NULL DEFAULT 1,
    -- The revision of the incident the context was computed for: an older one never overwrites a newer.
    incident_revision integer NOT NULL,
    complete     boolean NOT NULL,
    context      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

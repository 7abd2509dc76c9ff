-- What the newest stored reports of an incident were rendered from, and whether `report.ready` went out for them.
-- An event for an incident whose revision and enrichment are unchanged since then is skipped without rendering:
-- in a storm, queued events coalesce into one rendering.
CREATE TABLE report_sources (
    incident_id        bigint PRIMARY KEY REFERENCES incidents (id),
    report_version     integer NOT NULL,
    incident_revision  integer NOT NULL,
    enrichment_version integer,
    published          boolean NOT NULL DEFAULT false,
    rendered_at        timestamptz NOT NULL DEFAULT now()
);

-- The period audit asks, per incident, whether its timeline holds an acknowledgement (by a silence: audit.sql's
-- audit_summary and audit_incidents) or a start of flapping (shared/insights/noise.sql). incident_timeline_incident
-- (0001) finds an incident's entries but not their kind: each question read every entry of the incident from the
-- table (one per alert added, comment, acknowledgement...), so the 30-day audit of 100,000 incidents of two alerts
-- read half a million rows for its 100,000 answers, and an incident of 10,000 alerts read 10,000 for one. This index
-- holds only the entries asked about, about one per incident: each question is one probe. Entries of other kinds
-- (alerts added, comments, enrichment) gain no index entry.
CREATE INDEX incident_timeline_acknowledged_flapped ON incident_timeline (incident_id, kind)
    WHERE kind IN ('incident_acknowledged', 'flapping_started');

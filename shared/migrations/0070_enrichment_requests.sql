-- An incident waiting for the enricher: the correlator asks for an enrichment (a message to the enricher's queue)
-- only when it finds no request standing, and the enricher deletes the request in the transaction before it reads
-- the incident's state, so every change is either in the state it reads or asks again. In a storm an incident that
-- grows in every batch is one message until it is enriched, not one per batch (services/correlator/store.py).
-- `requested_at`: a request older than the correlator's limit is asked again (its message was parked or purged).
CREATE TABLE enrichment_requests (
    incident_id  bigint PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
    requested_at timestamptz NOT NULL
);
-- Migration 0060's rule: the web never needs it; people and tools that look may read it.
GRANT SELECT ON enrichment_requests TO vigil_readonly;

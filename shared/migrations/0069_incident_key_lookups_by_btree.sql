-- Looking incidents up by key (`key = ANY(...)`: the enricher's progress query, 50 keys a batch, and the correlator's
-- commands) used the trigram index over keys, not the unique btree: pg_trgm's operator class answers `=` too, and
-- the planner costs a GIN lookup low. A GIN lookup reads the index's whole pending list of recent entries, so after
-- a storm of 60,000 alerts one batch's lookup took 140 ms of PostgreSQL instead of well under one. The trigram index
-- is for free-text search only; over lower(key), which no equality on key can use, it still serves `ILIKE` (case
-- does not matter to it) through services/web/queries.sql's `lower(i.key) ILIKE`.
DROP INDEX incidents_key_trgm;
CREATE INDEX incidents_key_trgm ON incidents USING gin (lower(key) gin_trgm_ops);

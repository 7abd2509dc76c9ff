-- How many notifications Vigil received for each alert occurrence: the first, every repeat, the resolve (the audit's
-- noise funnel, shared/insights/noise.py). Only the correlator writes it, folded into the statements it already runs
-- for an occurrence (services/correlator/queries.sql: upsert_alerts, refresh_alerts), so the hot path gains no
-- statement. Rows stored before this migration were counted as nothing but their first notification: 1.
-- A constant default is stored in the catalogue, not written into every row: adding it does not rewrite the table.
-- Not indexed: a repeat changes it, and an indexed column would stop repeats from being HOT updates (0011).
ALTER TABLE alerts ADD COLUMN notifications integer NOT NULL DEFAULT 1;

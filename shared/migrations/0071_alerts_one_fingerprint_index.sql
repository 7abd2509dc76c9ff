-- alerts_fingerprint_recent (fingerprint, starts_at DESC) repeated the unique index on (fingerprint, starts_at): every
-- query that wants a fingerprint's newest occurrence asks for one fingerprint at a time (`ORDER BY starts_at DESC
-- LIMIT 1`), which the unique index answers read backward, and the planner does so once this one is gone. It cost every
-- stored alert a second insert into a btree of the same size (8.7 MB of 134,000 alerts after `make bench`'s storms).
DROP INDEX alerts_fingerprint_recent;

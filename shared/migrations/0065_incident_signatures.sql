-- Similar past incidents (shared/signatures.py, shared/readmodel/queries.sql `similar_incidents`). An announced
-- incident's signature is a set of tokens, one row each:
--   rule   its correlation rule                         written by the correlator when the incident is announced
--   label  each group label, `name=value`               ... likewise
--   alert  each alert name it has held                  ... and as alerts of new names join it
--   log    each template of its error-burst log lines   written by the enricher with each enrichment (replaced)
-- A token is stored as a 64-bit hash of `kind:value` (signature_token below), not as text: a label value may be 2 KB
-- and a log template 1 KB, past what a btree entry may hold, and the lookups only ever compare tokens.
--
-- Why rows and a btree rather than a text[] per incident and a GIN index: the lookup must stay fast whatever the
-- tokens' frequencies. A GIN index answers "which incidents hold token t" with every one of them, so a token shared
-- by nearly every incident (the rule `default`, a label `env=prod`) reads nearly every incident. The btree below is
-- ordered by (token, opened_at, incident_id): per token, the most recent earlier incidents holding it are one bounded
-- index range scan (`ORDER BY opened_at DESC LIMIT k`), however common the token. The rule token is never used to
-- find candidates at all (it only counts in the score), and the score itself reads the candidates' tokens through the
-- primary key. See the query for the bound this puts on the answer.
--
-- opened_at is the incident's, copied into each row (it never changes once the incident is opened): "earlier" and
-- "most recent" are then answered by the index alone. Only announced incidents have rows (the correlator writes them
-- at the announcement), so held-back groups never crowd the most recent rows of a token.
CREATE TABLE incident_signature_tokens (
    incident_id bigint NOT NULL REFERENCES incidents (id),
    token       bigint NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('rule', 'label', 'alert', 'log')),
    opened_at   timestamptz NOT NULL,
    -- Also the way in for the score (an incident's tokens with their kinds, from the index alone), the enricher's
    -- replacement and retention's delete.
    PRIMARY KEY (incident_id, token) INCLUDE (kind)
);

CREATE INDEX incident_signature_tokens_recent ON incident_signature_tokens (token, opened_at, incident_id);

-- The token of `kind:value`: the first 64 bits of its SHA-256, as a signed bigint. One definition, used by every
-- writer's SQL; a collision (one in 2^64 per pair) would only make two unrelated tokens look shared.
CREATE FUNCTION signature_token(kind text, value text) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT ('x' || left(encode(sha256(convert_to(kind || ':' || value, 'UTF8')), 'hex'), 16))::bit(64)::bigint $$;

-- The last comment of each similar incident: what a person wrote, as a comment or with an acknowledgement, a resolve or
-- a reopen (a silence's comment, when the silence acknowledged). Such entries are few among thousands of alert
-- entries, so a partial index finds an incident's newest without walking its timeline. The readmodel's query repeats
-- this predicate word for word, so the planner can use the index.
CREATE INDEX incident_timeline_comments ON incident_timeline (incident_id, at DESC, id DESC)
    WHERE kind IN ('comment', 'incident_acknowledged', 'incident_resolved', 'incident_reopened')
      AND (detail ->> 'comment') <> '';

-- The correlator's part for the incidents already announced: their rule, group labels and alert names. The log part
-- needs the enricher's masking (Python): it comes with each incident's next enrichment. A seconds-long scan of
-- `alerts` on a big database, once.
INSERT INTO incident_signature_tokens (incident_id, token, kind, opened_at)
SELECT i.id, signature_token(t.kind, t.value), t.kind, i.opened_at
FROM incidents i
CROSS JOIN LATERAL (
    SELECT 'rule' AS kind, i.rule AS value
    UNION ALL
    SELECT 'label', l.key || '=' || l.value FROM jsonb_each_text(i.group_labels) AS l
) t
WHERE i.announced
UNION ALL
SELECT n.incident_id, signature_token('alert', n.alertname), 'alert', i.opened_at
FROM (SELECT DISTINCT a.incident_id, a.alertname FROM alerts a WHERE a.incident_id IS NOT NULL) n
JOIN incidents i ON i.id = n.incident_id AND i.announced
ON CONFLICT DO NOTHING;

-- The web reads similar incidents (page, API, reports it renders); nothing in the tokens is secret (0060's rule).
GRANT SELECT ON incident_signature_tokens TO vigil_web, vigil_readonly;

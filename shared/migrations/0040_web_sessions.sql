-- Login sessions of the web dashboard. Only a hash of the cookie's token is stored, so a copy of this
-- table does not let anyone in; deleting a row logs that browser out at once.
CREATE TABLE web_sessions (
    token_hash  text PRIMARY KEY,
    username    text NOT NULL,
    -- How the person got in: 'password' (login page) or 'proxy' (trusted reverse-proxy header).
    method      text NOT NULL CHECK (method IN ('password', 'proxy')),
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);

-- Dashboard filters: "incidents on this host" is an array containment test.
CREATE INDEX incidents_hosts ON incidents USING gin (hosts);

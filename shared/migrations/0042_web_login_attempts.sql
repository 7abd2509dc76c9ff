-- Login attempts of the web dashboard, per user name, for brute-force protection as Grafana does it: once a
-- name has VIGIL_WEB_LOGIN_MAX_FAILURES failures within VIGIL_WEB_LOGIN_LOCKOUT_S, its logins are refused until
-- the oldest age out. Kept here, not in memory, so every web replica counts the same attempts. An attempt is
-- written before its password is checked, unless it is refused; a name's rows are deleted when it logs in.
CREATE TABLE web_login_attempts (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username  text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX web_login_attempts_by_name ON web_login_attempts (username, at);

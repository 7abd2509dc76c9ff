-- Failed logins are counted per client address too (VIGIL_WEB_LOGIN_MAX_FAILURES_PER_ADDRESS), so one source cannot
-- guess its way through many user names. The address is the one the web decided the client has (the TCP peer, or
-- X-Forwarded-For from a trusted proxy), an IPv6 address as its /64; rows from before this have none and count per
-- name only.
ALTER TABLE web_login_attempts ADD COLUMN address text;

CREATE INDEX web_login_attempts_by_address ON web_login_attempts (address, at);

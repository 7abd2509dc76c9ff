-- Silences and inhibitions: what Alertmanager itself stopped sending (services/correlator/silences.py polls its
-- /api/v2/alerts and /api/v2/silences). An alert Alertmanager silences or inhibits is not repeated to the webhook, so
-- without this the sweeper would mark it stale and auto-resolve its incident while the problem is still there.
--
-- suppressed: NULL for an ordinary alert, else 'silenced' or 'inhibited' (silenced wins when both).
-- silenced_by, inhibited_by: Alertmanager's silence ids and the fingerprints of the inhibiting alerts.
-- suppressed_until: when the last silence covering it ends (NULL for an inhibition: it lasts as long as its source).
ALTER TABLE alerts
    ADD COLUMN suppressed text CHECK (suppressed IN ('silenced', 'inhibited')),
    ADD COLUMN silenced_by text[] NOT NULL DEFAULT '{}',
    ADD COLUMN inhibited_by text[] NOT NULL DEFAULT '{}',
    ADD COLUMN suppressed_until timestamptz;

-- The few suppressed alerts, for the poller's comparison with Alertmanager's answer.
CREATE INDEX alerts_suppressed ON alerts (fingerprint) WHERE suppressed IS NOT NULL;

-- Alertmanager's silences as last polled (deduplicated by id over an HA pair). `source`: the API URL that answered.
CREATE TABLE silences (
    id          text PRIMARY KEY,
    matchers    jsonb NOT NULL DEFAULT '[]',
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    created_by  text NOT NULL DEFAULT '',
    comment     text NOT NULL DEFAULT '',
    state       text NOT NULL,
    source      text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- When Alertmanager last answered a poll: suppression is trusted only while this is recent (the sweeper reads it).
-- One row, written by the correlator's poller.
CREATE TABLE alertmanager_poll (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    polled_at  timestamptz NOT NULL
);

-- The web shows who silenced an alert, until when and why; neither table holds anything secret (0060's rule).
GRANT SELECT ON silences, alertmanager_poll TO vigil_web, vigil_readonly;

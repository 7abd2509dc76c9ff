-- Core schema: alerts, incidents, their timeline, and the outbox of incident events.
-- The correlator is the only writer of these tables; every other service reads them.

CREATE SEQUENCE incident_number_seq;

CREATE TABLE incidents (
    id              bigserial PRIMARY KEY,
    -- Human key from a sequence, unique across correlator replicas: INC-000123.
    key             text NOT NULL UNIQUE,
    rule            text NOT NULL,
    -- Rule name plus the canonical group labels: alerts of one group share one open incident.
    group_key       text NOT NULL,
    group_labels    jsonb NOT NULL DEFAULT '{}',
    title           text NOT NULL,
    state           text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    -- False until the rule's min_alerts is reached; only announced incidents are published.
    announced       boolean NOT NULL DEFAULT false,
    severity        text NOT NULL DEFAULT 'none',
    hosts           text[] NOT NULL DEFAULT '{}',
    flapping        boolean NOT NULL DEFAULT false,
    revision        integer NOT NULL DEFAULT 1,
    alert_count     integer NOT NULL DEFAULT 0,
    firing_count    integer NOT NULL DEFAULT 0,
    opened_at       timestamptz NOT NULL,
    first_alert_at  timestamptz NOT NULL,
    last_alert_at   timestamptz NOT NULL,
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at     timestamptz,
    resolved_by     text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- At most one unresolved incident per group, whatever the number of correlator replicas.
CREATE UNIQUE INDEX incidents_one_active_per_group ON incidents (group_key) WHERE state <> 'resolved';
CREATE INDEX incidents_group_recent ON incidents (group_key, last_alert_at DESC);
CREATE INDEX incidents_newest ON incidents (opened_at DESC, id DESC);
CREATE INDEX incidents_state_newest ON incidents (state, opened_at DESC, id DESC);

-- One row per alert occurrence: (fingerprint, starts_at). Repeats of a known state refresh last_seen_at.
CREATE TABLE alerts (
    id             bigserial PRIMARY KEY,
    incident_id    bigint REFERENCES incidents (id),
    fingerprint    text NOT NULL,
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz,
    status         text NOT NULL CHECK (status IN ('firing', 'resolved', 'stale')),
    alertname      text NOT NULL,
    severity       text NOT NULL DEFAULT 'none',
    host           text,
    labels         jsonb NOT NULL,
    annotations    jsonb NOT NULL DEFAULT '{}',
    generator_url  text NOT NULL DEFAULT '',
    source         text NOT NULL DEFAULT 'alertmanager',
    sender         text NOT NULL DEFAULT '',
    receiver       text NOT NULL DEFAULT '',
    first_seen_at  timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    resolved_at    timestamptz,
    UNIQUE (fingerprint, starts_at)
);

CREATE INDEX alerts_incident ON alerts (incident_id, starts_at);
CREATE INDEX alerts_firing_last_seen ON alerts (last_seen_at) WHERE status = 'firing';
CREATE INDEX alerts_fingerprint_recent ON alerts (fingerprint, starts_at DESC);

-- Every change of an incident, in order: alert added/resolved/stale, state changes, acks, comments.
CREATE TABLE incident_timeline (
    id          bigserial PRIMARY KEY,
    incident_id bigint NOT NULL REFERENCES incidents (id),
    at          timestamptz NOT NULL,
    kind        text NOT NULL,
    actor       text,
    detail      jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX incident_timeline_incident ON incident_timeline (incident_id, at, id);

-- Events written in the same transaction as the change they announce, published after commit.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    message_id   uuid NOT NULL UNIQUE,
    exchange     text NOT NULL,
    routing_key  text NOT NULL,
    body         jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Ids of messages whose effect is committed, for consumers whose work is not naturally idempotent.
CREATE TABLE processed_messages (
    consumer     text NOT NULL,
    message_id   uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

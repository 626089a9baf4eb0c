-- Tenants, their API keys (hashed), sessions, messages and every status change.
CREATE TABLE tenants (
  id          uuid PRIMARY KEY,
  name        text NOT NULL UNIQUE,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of a key is stored: a database leak does not leak usable keys.
CREATE TABLE api_keys (
  key_hash    text PRIMARY KEY,
  tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  prefix      text NOT NULL,            -- first characters, to tell keys apart in listings
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE sessions (
  tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  name        text NOT NULL,
  provider    text NOT NULL DEFAULT 'simulator',
  status      text NOT NULL DEFAULT 'ready',
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, name)
);

CREATE TABLE messages (
  id                   uuid PRIMARY KEY,
  tenant_id            uuid NOT NULL,
  session              text NOT NULL,
  recipient            text NOT NULL,
  body                 text NOT NULL,
  priority             text NOT NULL CHECK (priority IN ('high', 'default', 'low')),
  status               text NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
  idempotency_key      text,
  provider_message_id  text,
  error                text,
  -- Set once the message's result event is acknowledged by Kafka: a replayed command whose
  -- result is recorded but whose event is not yet published republishes it (same event id).
  event_published      boolean NOT NULL DEFAULT false,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (tenant_id, session) REFERENCES sessions (tenant_id, name) ON DELETE CASCADE,
  UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX messages_tenant_created ON messages (tenant_id, created_at);

CREATE TABLE message_status_history (
  message_id  uuid NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
  status      text NOT NULL,
  at          timestamptz NOT NULL,
  detail      text
);
CREATE INDEX message_status_history_message ON message_status_history (message_id, at);

-- Sessions for real: a lifecycle with status history, a provider (the simulator's direct API,
-- a WAHA-shaped engine node, or the WhatsApp Cloud API), credentials encrypted at rest, the QR
-- shown while pairing; receipts and inbound messages from provider callbacks.
--
-- 'simulator' sessions (what `switchboard session create` made before) need no pairing: they
-- are WORKING from the start, as they always behaved.
UPDATE sessions SET status = 'WORKING' WHERE status = 'ready';
ALTER TABLE sessions ALTER COLUMN status SET DEFAULT 'STOPPED';
ALTER TABLE sessions
  ADD COLUMN raw_status      text,                 -- the provider's own word, when it is not one of ours
  ADD COLUMN reason          text,                 -- why it is in this status (FAILED, paused …)
  ADD COLUMN status_at       timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN node            text,                 -- engine node hosting it (engine sessions)
  ADD COLUMN engine_name     text,                 -- its name on the engine
  ADD COLUMN phone_number_id text,                 -- Cloud API sessions
  ADD COLUMN account         text,                 -- the paired number, when known
  -- Non-secret settings, shown by the API; the secret ones (tokens, keys) only encrypted
  -- (AES-256-GCM under secrets.key), never returned.
  ADD COLUMN config          jsonb NOT NULL DEFAULT '{}',
  ADD COLUMN secrets         text,                 -- base64 of the sealed JSON
  ADD COLUMN qr_value        text,
  ADD COLUMN qr_png          text,                 -- base64
  ADD COLUMN qr_at           timestamptz,
  ADD COLUMN deleting        boolean NOT NULL DEFAULT false,
  ADD COLUMN updated_at      timestamptz NOT NULL DEFAULT now(),
  ADD CONSTRAINT sessions_provider_check CHECK (provider IN ('simulator', 'engine', 'cloud_api')),
  ADD CONSTRAINT sessions_status_check
    CHECK (status IN ('STOPPED', 'STARTING', 'SCAN_QR_CODE', 'WORKING', 'FAILED', 'UNKNOWN'));
-- A Cloud API number belongs to one session: callbacks name the number, not the session.
CREATE UNIQUE INDEX sessions_phone_number_id ON sessions (phone_number_id) WHERE phone_number_id IS NOT NULL;

CREATE TABLE session_status_history (
  tenant_id   uuid NOT NULL,
  session     text NOT NULL,
  status      text NOT NULL,
  raw_status  text,
  reason      text,
  at          timestamptz NOT NULL,
  FOREIGN KEY (tenant_id, session) REFERENCES sessions (tenant_id, name) ON DELETE CASCADE
);
CREATE INDEX session_status_history_session ON session_status_history (tenant_id, session, at);

-- Receipts move a sent message on: delivered, read (never backwards; a late one is history only).
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
  CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'read', 'failed'));
CREATE INDEX messages_provider_message_id ON messages (provider_message_id) WHERE provider_message_id IS NOT NULL;
-- One history row per status a message reached (a duplicate callback adds nothing).
CREATE UNIQUE INDEX message_status_history_receipt ON message_status_history (message_id, status)
  WHERE status IN ('delivered', 'read');

-- Inbound messages, deduplicated on the provider's id.
CREATE TABLE inbound_messages (
  id                   uuid PRIMARY KEY,
  tenant_id            uuid NOT NULL,
  session              text NOT NULL,
  provider_message_id  text NOT NULL,
  sender               text NOT NULL,
  body                 text NOT NULL,
  received_at          timestamptz NOT NULL,
  FOREIGN KEY (tenant_id, session) REFERENCES sessions (tenant_id, name) ON DELETE CASCADE,
  UNIQUE (tenant_id, session, provider_message_id)
);

-- Engine nodes managed automatically: a registry of nodes (capacity, storage group, draining,
-- health), a fencing generation on every session placement, the placer's lease and its moves
-- recorded as intents (a new leader finishes what a dead one started).
CREATE TABLE engine_nodes (
  name           text PRIMARY KEY,
  url            text NOT NULL,
  -- 'config': from engine.nodes (its credentials stay in config, never stored here);
  -- 'api': registered by `switchboard nodes add` / POST /v1/admin/nodes (credentials sealed).
  source         text NOT NULL DEFAULT 'api' CHECK (source IN ('config', 'api')),
  secrets        text,                          -- base64 of sealed {"api_key","webhook_hmac_key"}
  capacity       int NOT NULL CHECK (capacity >= 0),
  storage_group  text NOT NULL DEFAULT 'default',
  draining       boolean NOT NULL DEFAULT false,
  drained_at     timestamptz,                    -- set when a drain found it empty
  -- unknown until probed; dead after placer.failure_threshold failed probes in a row.
  health         text NOT NULL DEFAULT 'unknown' CHECK (health IN ('unknown', 'healthy', 'dead')),
  failures       int NOT NULL DEFAULT 0,
  health_at      timestamptz,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);

-- The fencing token of a session's placement: bumped by every (re)placement. Engine calls carry
-- it (X-Switchboard-Generation) and placement writes compare it, so a stale owner is refused.
ALTER TABLE sessions
  ADD COLUMN generation     bigint NOT NULL DEFAULT 0,
  ADD COLUMN storage_group  text;              -- the group whose auth storage holds its pairing
CREATE INDEX sessions_node ON sessions (node) WHERE node IS NOT NULL;

-- One placer acts at a time: the holder of this row while expires_at is ahead. epoch grows with
-- every change of holder; each placer write checks it in the same transaction.
CREATE TABLE placer_lease (
  name        text PRIMARY KEY,
  holder      text NOT NULL,
  epoch       bigint NOT NULL,
  expires_at  timestamptz NOT NULL
);

-- A move in progress: written with the new placement (same transaction), deleted once the
-- session is stopped on from_node and started on to_node. A new leader redoes what it finds.
CREATE TABLE session_moves (
  tenant_id   uuid NOT NULL,
  session     text NOT NULL,
  from_node   text,
  to_node     text NOT NULL,
  generation  bigint NOT NULL,
  reason      text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, session),
  FOREIGN KEY (tenant_id, session) REFERENCES sessions (tenant_id, name) ON DELETE CASCADE
);

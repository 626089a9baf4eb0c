-- Webhook endpoints of a tenant and the log of every delivery attempt.
CREATE TABLE webhook_endpoints (
  id                          uuid PRIMARY KEY,
  tenant_id                   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  url                         text NOT NULL,
  events                      text[] NOT NULL,        -- "message.sent", "session.*", "*"
  -- The signing key must be usable, so it is stored (not hashed); keep database access tight.
  secret                      text NOT NULL,          -- whsec_…
  -- During a rotation both signatures are sent until previous_secret_expires_at.
  previous_secret             text,
  previous_secret_expires_at  timestamptz,
  enabled                     boolean NOT NULL DEFAULT true,
  disabled_reason             text,
  ordering                    text NOT NULL DEFAULT 'none' CHECK (ordering IN ('none', 'per_session')),
  created_at                  timestamptz NOT NULL DEFAULT now(),
  updated_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id);

CREATE TABLE webhook_attempts (
  id                bigserial PRIMARY KEY,
  endpoint_id       uuid NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
  tenant_id         uuid NOT NULL,
  event_id          uuid NOT NULL,
  event_type        text NOT NULL,
  attempt           int NOT NULL,
  outcome           text NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'dead_lettered')),
  http_status       int,
  error             text,
  latency_ms        int,
  response_excerpt  text,                               -- first 2 KiB of the response body
  at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_attempts_endpoint_at ON webhook_attempts (endpoint_id, at DESC);
CREATE INDEX webhook_attempts_event ON webhook_attempts (event_id);

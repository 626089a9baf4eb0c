-- What the webhook dispatcher needs beyond the schedule:
-- events: every event it consumed, so an endpoint's events can be replayed from a point in time
-- and one event can be redelivered; kept webhooks.event_retention_days.
CREATE TABLE events (
  id           uuid PRIMARY KEY,
  tenant_id    uuid NOT NULL,
  type         text NOT NULL,
  session      text,
  occurred_at  timestamptz NOT NULL,
  body         text NOT NULL,                       -- the envelope exactly as delivered
  recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_tenant_occurred ON events (tenant_id, occurred_at);
CREATE INDEX events_recorded ON events (recorded_at);

-- per_session ordering: a parked delivery holds back later ones of the same (endpoint, session).
ALTER TABLE webhook_deliveries ADD COLUMN ordered boolean NOT NULL DEFAULT false;
CREATE INDEX webhook_deliveries_endpoint_session ON webhook_deliveries (endpoint_id, session, id);

-- Since when an endpoint has failed without a success in between: failing for
-- webhooks.disable_after_s disables it.
ALTER TABLE webhook_endpoints ADD COLUMN failing_since timestamptz;

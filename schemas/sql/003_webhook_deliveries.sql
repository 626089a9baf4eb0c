-- The durable retry schedule of webhook deliveries: a failed attempt is parked here (with the
-- event body) so the event's Kafka offset can be committed; any dispatcher replica claims due
-- rows with FOR UPDATE SKIP LOCKED and a lease, so a crashed claimer's rows come back.
CREATE TABLE webhook_deliveries (
  id             bigserial PRIMARY KEY,
  endpoint_id    uuid NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
  tenant_id      uuid NOT NULL,
  event_id       uuid NOT NULL,
  event_type     text NOT NULL,
  session        text,
  body           text NOT NULL,
  attempts       int NOT NULL DEFAULT 0,            -- failed attempts so far
  due_at         timestamptz NOT NULL,
  claimed_until  timestamptz,
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (endpoint_id, event_id)                    -- a replayed event is scheduled once
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (due_at);

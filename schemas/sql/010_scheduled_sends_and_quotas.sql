-- Scheduled sends: a message with send_at waits in PostgreSQL as 'scheduled' until a scheduler
-- (producers/scheduled_sender.hpp, in every intake replica) publishes it to its lane at that
-- time; 'cancelled' is where DELETE /v1/messages/{id} leaves it. The partial index holds only
-- the waiting rows, so "what is due" stays an index range however many messages were ever sent.
ALTER TABLE messages ADD COLUMN send_at timestamptz;
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
  CHECK (status IN ('scheduled', 'queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'cancelled'));
CREATE INDEX messages_scheduled_due ON messages (send_at) WHERE status = 'scheduled';

-- Per-tenant quota overrides for intake (config intake quotas are the default): NULL = the
-- config default, 0 = unlimited.
CREATE TABLE tenant_quotas (
  tenant_id         uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
  requests_per_s    integer CHECK (requests_per_s >= 0),
  messages_per_day  integer CHECK (messages_per_day >= 0),
  updated_at        timestamptz NOT NULL DEFAULT now()
);

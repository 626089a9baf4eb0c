-- Worker core v2: a durable "sending" mark is set (batched) before every provider call, so a
-- replayed command found 'sending' without an outcome is never sent blindly again. The
-- event_published flag goes: a replay republishes the same deterministic event id instead.
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
  CHECK (status IN ('queued', 'sending', 'sent', 'failed'));
ALTER TABLE messages DROP COLUMN event_published;

-- The attempt log is kept as long as the events (webhooks.event_retention_days): the
-- dispatcher deletes older rows in batches, by age.
CREATE INDEX webhook_attempts_at ON webhook_attempts (at);

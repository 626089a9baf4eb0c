-- Anti-ban pacing and automatic pause (core/pacing_policy.hpp, workers/redis_pacer.cpp).
--
-- A tenant's and a session's `pacing` override the config defaults key by key ({} = inherit
-- all). first_working_at starts a new number's warm-up ramp (daily caps counted from it). A
-- session a provider flagged (spam limit, policy block) is PAUSED until paused_until, when a
-- worker resumes it (or POST /v1/sessions/{id}/resume does); its sends wait per
-- sessions.not_working meanwhile, like any session that is not WORKING.
ALTER TABLE tenants ADD COLUMN pacing jsonb NOT NULL DEFAULT '{}';
ALTER TABLE sessions
  ADD COLUMN pacing           jsonb NOT NULL DEFAULT '{}',
  ADD COLUMN first_working_at timestamptz,
  ADD COLUMN paused_until     timestamptz;

ALTER TABLE sessions DROP CONSTRAINT sessions_status_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_status_check
  CHECK (status IN ('STOPPED', 'STARTING', 'SCAN_QR_CODE', 'WORKING', 'PAUSED', 'FAILED', 'UNKNOWN'));

-- Whoever writes the status (lifecycle, callbacks, resume), the first WORKING is remembered.
CREATE FUNCTION sessions_first_working() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status = 'WORKING' AND NEW.first_working_at IS NULL THEN
    NEW.first_working_at := now();
  END IF;
  IF NEW.status <> 'PAUSED' THEN
    NEW.paused_until := NULL;  -- a pause ends with any other status
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER sessions_first_working BEFORE INSERT OR UPDATE OF status ON sessions
  FOR EACH ROW EXECUTE FUNCTION sessions_first_working();

-- Sessions that worked before this migration: their first WORKING on record (or their creation).
UPDATE sessions s SET first_working_at = COALESCE(
  (SELECT min(h.at) FROM session_status_history h
    WHERE h.tenant_id = s.tenant_id AND h.session = s.name AND h.status = 'WORKING'), s.created_at)
WHERE s.status = 'WORKING' OR EXISTS (
  SELECT 1 FROM session_status_history h WHERE h.tenant_id = s.tenant_id AND h.session = s.name AND h.status = 'WORKING');

-- The resume sweep looks here only.
CREATE INDEX sessions_paused_until ON sessions (paused_until) WHERE status = 'PAUSED';

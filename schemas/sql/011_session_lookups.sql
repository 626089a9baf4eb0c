-- Every engine callback names its session by the engine's session name (on its node): look it
-- up by index, not by a scan of every session (three callbacks per message under load).
CREATE INDEX sessions_engine_name ON sessions (engine_name, node) WHERE engine_name IS NOT NULL;

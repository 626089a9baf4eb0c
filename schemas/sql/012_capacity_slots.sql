-- Capacity slots counted where placement reads them. A placement decision used to count every
-- candidate node's sessions (an index walk of ~2,500 entries per node at 2,500 sessions a node)
-- with the group's node rows locked, so decisions in a group were serial and slowed as nodes
-- filled. engine_nodes.placed now holds the count, and placement reads it from the rows it locks.
--
-- Which sessions hold a slot: sessions.holds_slot. A placement (create with a start, a move, a
-- start that re-checks capacity) takes one; STOPPED and FAILED give it back (a stopped WAHA
-- session holds no browser); a session reported running again (any other status after STOPPED
-- or FAILED) holds one again, whether or not it was asked for — the node runs it either way.
--
-- Why triggers rather than each code path adjusting the count: the count changes with every
-- insert, delete, move and status change of a session, from intake, the lane workers, the
-- callbacks worker and the placer. A trigger runs in the very transaction that changes the row
-- (so the count commits or rolls back with it, under the same row locks), and no path — today's
-- or one added later, or an operator's UPDATE — can forget it, so the count cannot drift from
-- count(*). (TRUNCATE sessions fires no row trigger; nothing in Switchboard truncates it.)
ALTER TABLE sessions ADD COLUMN holds_slot boolean NOT NULL DEFAULT true;
ALTER TABLE engine_nodes ADD COLUMN placed int NOT NULL DEFAULT 0;

UPDATE sessions SET holds_slot = status NOT IN ('STOPPED', 'FAILED');

-- A status change into STOPPED/FAILED frees the slot; out of them, takes it.
CREATE FUNCTION sessions_slot_follows_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status IS DISTINCT FROM OLD.status THEN
    IF NEW.status IN ('STOPPED', 'FAILED') THEN
      NEW.holds_slot := false;
    ELSIF OLD.status IN ('STOPPED', 'FAILED') THEN
      NEW.holds_slot := true;
    END IF;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER sessions_slot_follows_status BEFORE UPDATE OF status ON sessions
  FOR EACH ROW EXECUTE FUNCTION sessions_slot_follows_status();

-- The count: −1 where a slot was held and no longer is (moved off, freed, deleted), +1 where
-- one is held that was not. Placement has the rows these touch locked already (it locks the
-- group's node rows, in name order, before it writes the session), so this adds no lock order.
CREATE FUNCTION sessions_count_slots() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  old_node text;
  new_node text;
BEGIN
  IF TG_OP <> 'INSERT' THEN
    IF OLD.holds_slot THEN
      old_node := OLD.node;
    END IF;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    IF NEW.holds_slot THEN
      new_node := NEW.node;
    END IF;
  END IF;
  IF old_node IS NOT DISTINCT FROM new_node THEN
    RETURN NULL;
  END IF;
  IF old_node IS NOT NULL THEN
    UPDATE engine_nodes SET placed = placed - 1 WHERE name = old_node;
  END IF;
  IF new_node IS NOT NULL THEN
    UPDATE engine_nodes SET placed = placed + 1 WHERE name = new_node;
  END IF;
  RETURN NULL;
END $$;
-- status is listed: holds_slot changes by the BEFORE trigger above, which a column list
-- would not see on its own.
CREATE TRIGGER sessions_count_slots AFTER INSERT OR DELETE OR UPDATE OF node, holds_slot, status ON sessions
  FOR EACH ROW EXECUTE FUNCTION sessions_count_slots();

-- A node (re-)registered under a name sessions still name starts from their count, not 0.
CREATE FUNCTION engine_nodes_initial_placed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.placed := (SELECT count(*) FROM sessions WHERE node = NEW.name AND holds_slot);
  RETURN NEW;
END $$;
CREATE TRIGGER engine_nodes_initial_placed BEFORE INSERT ON engine_nodes
  FOR EACH ROW EXECUTE FUNCTION engine_nodes_initial_placed();

UPDATE engine_nodes n SET placed = (SELECT count(*) FROM sessions s WHERE s.node = n.name AND s.holds_slot);

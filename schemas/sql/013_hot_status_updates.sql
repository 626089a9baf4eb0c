-- A message's status changes (queued → sending, receipts' delivered → read, a release back to
-- queued) become HOT updates: no index entry per change. Two things stopped that: the scheduler's
-- index named `status` in its predicate (a predicate's columns count as indexed), and full pages
-- (fillfactor 100) left no room for the new version beside the old one. In a chaos run 0 of
-- 108,245 updates of messages were HOT. The scheduler now finds due rows through `release_at`,
-- set while a message waits to be released and cleared when it is released, claimed or
-- cancelled, so the index holds only the waiting ones (never every message ever scheduled).
ALTER TABLE messages ADD COLUMN release_at timestamptz;
UPDATE messages SET release_at = send_at WHERE status = 'scheduled';
DROP INDEX messages_scheduled_due;
CREATE INDEX messages_release_due ON messages (release_at) WHERE release_at IS NOT NULL;
-- Room on each new page for the updated versions of its rows (existing pages keep theirs).
ALTER TABLE messages SET (fillfactor = 80);

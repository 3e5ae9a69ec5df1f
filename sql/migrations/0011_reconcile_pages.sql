-- 0011: how many List Orders pages each reconcile pass read (shown by the console's reconcile page,
-- `bunsync status` and `bunsync explain`), so an operator sees a pass's cost, not only its outcome.
ALTER TABLE bunsync.reconcile_passes ADD COLUMN pages integer NOT NULL DEFAULT 0;

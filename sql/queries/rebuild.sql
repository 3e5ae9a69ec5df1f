-- name: begin
-- Fresh, empty build tables for projection $1 (its tables $2, text[]) in schema bunsync_build_<$1>,
-- replacing whatever an interrupted rebuild left; returns the schema's name.
SELECT bunsync.projection_build_begin($1::text, $2::text[]);

-- name: swap
-- Move projection $1's rebuilt tables ($2, text[]) in place of the live ones, with their checkpoint
-- and parked events. Run in the swap transaction, after the final catch-up; the views must then be
-- re-created in the same transaction (they are bound to the old tables).
SELECT bunsync.projection_build_swap($1::text, $2::text[]);

-- name: finish
-- Drop projection $1's retired tables and its build schema (same transaction as swap).
SELECT bunsync.projection_build_finish($1::text);

-- name: lock_timeout
-- Give up waiting for a lock after $1 (e.g. '10s') for the rest of this transaction, so that a
-- reader holding a view for long makes the swap retry rather than queue every other reader behind it.
SELECT set_config('lock_timeout', $1::text, true);

-- name: swap_lock
-- Take, without waiting, every lock the swap of tables $1 (text[]) needs (raises lock_not_available
-- if a reader holds one: the caller rolls back to its savepoint and tries again shortly): the tables
-- and the reporting views bound to them (migration 0015), whose names it returns (text[]): the views
-- the swap must re-create.
SELECT bunsync.projection_swap_lock($1::text[]);

-- name: record_reading
-- Process $1's newest clock reading: skew $2 seconds (its clock minus Bunjang's Date header),
-- measured at $3. One row per process, replaced; a reading older than the stored one is ignored.
INSERT INTO bunsync.clock_readings AS c (reporter, skew_s, measured_at) VALUES ($1, $2, $3)
ON CONFLICT (reporter) DO UPDATE SET skew_s = excluded.skew_s, measured_at = excluded.measured_at
WHERE c.measured_at <= excluded.measured_at;

-- synvault catalog, version 5: retention (policies, protected points, forgotten points) and
-- the packs prune retires.

-- A retention policy per source; the source '' is the default for every source without one.
CREATE TABLE policies (
    source TEXT PRIMARY KEY,
    policy TEXT NOT NULL                       -- JSON (see src/retention/policy.rs)
);

-- A point protected until this time (ns since the epoch, UTC; i64::MAX: forever) is never
-- forgotten by policy.
ALTER TABLE points ADD COLUMN retain_until_ns INTEGER;

-- Points forgotten. The row is kept (a tombstone) so that a metadata pack still in the store
-- never brings the point back at `catalog rebuild`.
CREATE TABLE forgotten_points (
    id           TEXT PRIMARY KEY,
    forgotten_ns INTEGER NOT NULL
) WITHOUT ROWID;

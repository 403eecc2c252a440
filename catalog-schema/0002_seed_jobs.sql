-- synvault catalog, version 2: seed jobs (first full backups shipped on disks).

CREATE TABLE seed_jobs (
    name       TEXT PRIMARY KEY,
    point      TEXT REFERENCES points(id),     -- NULL while a prepare that ran out of room stands
    state      TEXT NOT NULL CHECK (state IN ('prepared', 'importing', 'imported', 'incomplete')),
    source     TEXT NOT NULL,
    disk_count INTEGER NOT NULL,
    created_ns INTEGER NOT NULL
);

-- Which disk of its job each shipped pack travels on.
CREATE TABLE seed_packs (
    job        TEXT NOT NULL REFERENCES seed_jobs(name),
    pack       BLOB NOT NULL,                  -- pack name (blake3 of its bytes)
    disk_index INTEGER NOT NULL,               -- 1-based
    PRIMARY KEY (job, pack)
) WITHOUT ROWID;

CREATE TABLE seed_disks_seen (
    job        TEXT NOT NULL REFERENCES seed_jobs(name),
    disk_index INTEGER NOT NULL,
    seen_ns    INTEGER NOT NULL,
    PRIMARY KEY (job, disk_index)
) WITHOUT ROWID;

-- Packs that arrived damaged; cleared when a good copy is imported or the pack is repaired.
CREATE TABLE seed_bad_packs (
    job    TEXT NOT NULL REFERENCES seed_jobs(name),
    pack   BLOB NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (job, pack)
) WITHOUT ROWID;

-- A point that cannot be read until a seed job's packs are in the store.
ALTER TABLE points ADD COLUMN awaiting_job TEXT;

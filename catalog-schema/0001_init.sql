-- synvault catalog, version 1: packs, blocks, file contents, Merkle trees, recovery points.
-- Ids (block, content, tree) are 32-byte blobs; names are raw bytes (need not be UTF-8).

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE packs (
    id       INTEGER PRIMARY KEY,
    name     BLOB NOT NULL UNIQUE,             -- blake3 of the pack's bytes
    size     INTEGER NOT NULL,
    state    TEXT NOT NULL CHECK (state IN ('stored', 'in_transit')),
    seed_job TEXT
);

CREATE TABLE blocks (
    id         BLOB PRIMARY KEY,               -- keyed blake3 of the plaintext
    pack       INTEGER NOT NULL REFERENCES packs(id),
    offset     INTEGER NOT NULL,
    stored_len INTEGER NOT NULL,
    raw_len    INTEGER NOT NULL
) WITHOUT ROWID;

-- One file version. block_list: n × (BlockId [32] | length u32 LE); the all-zero id marks
-- a block of zeros (a hole). Offsets are the running sum of lengths. A file of one non-zero
-- block is stored with an empty block_list and that block's id as its own id.
CREATE TABLE contents (
    id         BLOB PRIMARY KEY,               -- keyed blake3 of block_list
    size       INTEGER NOT NULL,
    block_list BLOB NOT NULL
) WITHOUT ROWID;

-- One directory listing per row: its entries (name as raw bytes, kind, mode, uid, gid,
-- mtime/ctime in ns, size, inode, nlink, content or subtree, symlink target, rdev, xattrs)
-- encoded and zstd-compressed as one blob (see src/catalog/tree_codec.rs).
CREATE TABLE trees (
    rowid       INTEGER PRIMARY KEY,
    id          BLOB NOT NULL UNIQUE,          -- keyed blake3 of the canonical entry encoding
    entry_count INTEGER NOT NULL,
    entries     BLOB NOT NULL
);

CREATE TABLE points (
    id            TEXT PRIMARY KEY,            -- 16 hex digits
    parent        TEXT,
    root_tree     BLOB NOT NULL REFERENCES trees(id),
    source        TEXT NOT NULL,
    host          TEXT NOT NULL,
    tags          TEXT NOT NULL DEFAULT '',    -- comma separated
    kind          TEXT NOT NULL CHECK (kind IN ('full', 'incremental', 'seeded')),
    state         TEXT NOT NULL CHECK (state IN ('running', 'complete', 'partial', 'awaiting_seed')),
    started_ns    INTEGER NOT NULL,
    finished_ns   INTEGER NOT NULL,
    files         INTEGER NOT NULL,
    dirs          INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,            -- logical bytes of the files in the point
    files_changed INTEGER NOT NULL,
    bytes_read    INTEGER NOT NULL,
    bytes_new     INTEGER NOT NULL,
    bytes_stored  INTEGER NOT NULL,
    errors        TEXT NOT NULL DEFAULT '[]',  -- JSON list of paths skipped, with reasons
    -- metadata of the root directory itself (the source directory of a one-path point)
    root_mode     INTEGER NOT NULL,
    root_uid      INTEGER NOT NULL,
    root_gid      INTEGER NOT NULL,
    root_mtime_ns INTEGER NOT NULL,
    root_xattrs   BLOB
);
CREATE INDEX points_by_source ON points(source, started_ns);

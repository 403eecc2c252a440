-- synvault catalog, version 6: packs prune took out of use.
--
-- No location in the catalog names a retired pack any more (its live blocks were moved to new
-- packs first). It stays in the store, set aside, while a reader that started before
-- `retired_ns` is alive (see src/lease.rs), and is deleted by the prune that finds none.
CREATE TABLE retired_packs (
    name       BLOB PRIMARY KEY,
    size       INTEGER NOT NULL,
    retired_ns INTEGER NOT NULL
) WITHOUT ROWID;

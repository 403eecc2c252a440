-- synvault catalog, version 8: where the blocks of retired packs were.
--
-- Prune forgets the blocks no point uses and retires their packs, which stay in the store while
-- a reader that started before the retirement is alive (see 0006). Such a reader may still
-- need those blocks (it was reading a point that was forgotten meanwhile); readers look blocks
-- up in the catalog as they go, so the locations stay here until the pack is deleted.
CREATE TABLE retired_blocks (
    id         BLOB NOT NULL,
    pack       BLOB NOT NULL,                  -- the retired pack's name
    offset     INTEGER NOT NULL,
    stored_len INTEGER NOT NULL,
    raw_len    INTEGER NOT NULL,
    PRIMARY KEY (id, pack)
) WITHOUT ROWID;
CREATE INDEX retired_blocks_by_pack ON retired_blocks(pack);

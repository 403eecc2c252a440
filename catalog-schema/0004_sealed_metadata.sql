-- synvault catalog, version 4: the catalog's records are sealed into the store as well.
--
-- Every backup writes a metadata pack (its new trees, contents and its point, sealed under the
-- catalog key) into the store before its transaction commits; `catalog rebuild` recreates the
-- catalog from data and metadata packs alone. Metadata packs are listed with the data packs.
ALTER TABLE packs ADD COLUMN kind TEXT NOT NULL DEFAULT 'data' CHECK (kind IN ('data', 'meta'));

-- A metadata pack written to the store whose backup has not committed yet. A row left by a
-- writer that died is settled by the next open: the pack is applied if it is in the store,
-- or the row dropped if it is not.
CREATE TABLE pending_seals (
    pack       BLOB PRIMARY KEY,               -- the metadata pack's name
    started_ns INTEGER NOT NULL
) WITHOUT ROWID;

-- A vault made before this version holds points whose metadata is in the catalog only: the
-- next writer seals a snapshot of it into the store and clears this setting.
INSERT INTO settings (key, value)
    SELECT 'unsealed_history', '1'
    WHERE EXISTS (SELECT 1 FROM points) OR EXISTS (SELECT 1 FROM seed_jobs);

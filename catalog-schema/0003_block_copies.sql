-- synvault catalog, version 3: second copies of blocks, written by a seed job.
--
-- A seed job writes onto its own disks every block its point needs that is not in a stored
-- pack yet, even one already travelling in another job's pack: importing the job alone then
-- makes its point restorable. `blocks` keeps one location per block, so such a second copy
-- waits here. When a copy's pack is stored while its block's location is still in transit,
-- the block moves to the copy; once its pack is stored, a copy is forgotten.
CREATE TABLE block_copies (
    pack       INTEGER NOT NULL REFERENCES packs(id),
    id         BLOB NOT NULL,                  -- the block
    offset     INTEGER NOT NULL,
    stored_len INTEGER NOT NULL,
    raw_len    INTEGER NOT NULL,
    PRIMARY KEY (pack, id)
) WITHOUT ROWID;

-- synvault catalog, version 15: the number of blocks, kept beside the store's totals.
--
-- A reader of a vault small enough to hold every block location in its bounded cache loads
-- them in one scan instead of asking batch by batch; it needs the count without counting.
ALTER TABLE store_totals ADD COLUMN blocks INTEGER NOT NULL DEFAULT 0;
-- Counted afresh, with the unique bytes: seed repair's INSERT OR REPLACE (before this version)
-- moved blocks without the delete trigger firing, so the bytes could have drifted upward.
UPDATE store_totals SET
    blocks = (SELECT count(*) FROM blocks),
    unique_bytes = (SELECT COALESCE(SUM(raw_len), 0) FROM blocks);
DROP TRIGGER store_totals_block_in;
CREATE TRIGGER store_totals_block_in AFTER INSERT ON blocks BEGIN
    UPDATE store_totals SET unique_bytes = unique_bytes + NEW.raw_len, blocks = blocks + 1;
END;
DROP TRIGGER store_totals_block_out;
CREATE TRIGGER store_totals_block_out AFTER DELETE ON blocks BEGIN
    UPDATE store_totals SET unique_bytes = unique_bytes - OLD.raw_len, blocks = blocks - 1;
END;

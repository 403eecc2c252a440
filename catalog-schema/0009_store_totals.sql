-- synvault catalog, version 9: the store's totals, kept as blocks and packs come and go.
--
-- `stats` summed every block row, which grows with the vault; triggers keep the sums exact
-- whichever code path writes (backup, seed import, rebuild, prune).
CREATE TABLE store_totals (
    only         INTEGER PRIMARY KEY CHECK (only = 0),
    unique_bytes INTEGER NOT NULL,             -- plaintext bytes of all blocks
    pack_bytes   INTEGER NOT NULL              -- bytes of all packs, data and metadata
);
INSERT INTO store_totals (only, unique_bytes, pack_bytes) VALUES (
    0,
    (SELECT COALESCE(SUM(raw_len), 0) FROM blocks),
    (SELECT COALESCE(SUM(size), 0) FROM packs)
);
CREATE TRIGGER store_totals_block_in AFTER INSERT ON blocks BEGIN
    UPDATE store_totals SET unique_bytes = unique_bytes + NEW.raw_len;
END;
CREATE TRIGGER store_totals_block_out AFTER DELETE ON blocks BEGIN
    UPDATE store_totals SET unique_bytes = unique_bytes - OLD.raw_len;
END;
CREATE TRIGGER store_totals_block_change AFTER UPDATE OF raw_len ON blocks BEGIN
    UPDATE store_totals SET unique_bytes = unique_bytes - OLD.raw_len + NEW.raw_len;
END;
CREATE TRIGGER store_totals_pack_in AFTER INSERT ON packs BEGIN
    UPDATE store_totals SET pack_bytes = pack_bytes + NEW.size;
END;
CREATE TRIGGER store_totals_pack_out AFTER DELETE ON packs BEGIN
    UPDATE store_totals SET pack_bytes = pack_bytes - OLD.size;
END;
CREATE TRIGGER store_totals_pack_change AFTER UPDATE OF size ON packs BEGIN
    UPDATE store_totals SET pack_bytes = pack_bytes - OLD.size + NEW.size;
END;

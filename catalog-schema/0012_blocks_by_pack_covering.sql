-- synvault catalog, version 12: the pack-order index covers a block's whole location.
--
-- A reader that misses asks for the block and the 256 that follow it in its pack. With only
-- (pack, offset) in the index each of those rows also cost a search of the blocks table by id
-- (about 2 us); with the lengths in the index the run is read from the index alone.
DROP INDEX blocks_by_pack;
CREATE INDEX blocks_by_pack ON blocks(pack, offset, stored_len, raw_len);

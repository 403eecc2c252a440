-- synvault catalog, version 10: blocks found by their pack in pack order.
--
-- Readers ask where a block is together with the blocks that follow it in its pack (those a
-- sequential read needs next); with the offset in the index that is a range read, not a sort
-- of the pack's blocks.
DROP INDEX blocks_by_pack;
CREATE INDEX blocks_by_pack ON blocks(pack, offset);

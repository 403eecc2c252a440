-- synvault catalog, version 7: blocks found by their pack.
--
-- Prune asks which blocks a pack holds (to plan and repack it) and removes packs whose rows
-- `blocks.pack` references; seed import and verify read a pack's blocks too. Without this
-- index each of those questions scanned every block of the vault, and deleting N pack rows
-- scanned it N times for the foreign key.
CREATE INDEX blocks_by_pack ON blocks(pack);

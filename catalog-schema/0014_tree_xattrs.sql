-- synvault catalog, version 14: which trees hold extended attributes.
--
-- Whether a directory holds extended attributes, so that a mount of a point without any can
-- tell the kernel to stop asking for them: 1 if an entry of this tree or of a tree below it
-- has xattrs, 0 if none has, NULL if not known (rows recorded before this version). Each
-- commit settles the trees of its point; `catalog rebuild` settles those of every point.
ALTER TABLE trees ADD COLUMN xattrs INTEGER;

-- synvault catalog, version 13: each point records its sources' absolute paths and where its
-- root was.
--
-- `source` stays the name of the point's series (the paths joined by ", ", for display, the
-- parent of an incremental and retention per source). `sources` holds every source's absolute
-- path as raw bytes, separated by NUL (no path holds a NUL), so that a restore can put a point
-- back where it came from and a selector can match a path exactly. NULL for points made
-- before this version: they are read from `source`.
ALTER TABLE points ADD COLUMN sources BLOB;

-- Where the point's root directory was: the source directory of a point of one directory,
-- else the deepest directory holding every source (each source lies at its path below it).
-- Raw bytes. NULL for points made before this version.
ALTER TABLE points ADD COLUMN root_path BLOB;

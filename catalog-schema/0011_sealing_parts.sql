-- synvault catalog, version 11: a backup seals its records into the store as it goes.
--
-- A large backup writes its trees and file versions into metadata packs of bounded size while
-- it runs ("parts"); the metadata pack its commit writes last names them. A part is listed
-- here before it is written, and moves to `packs` (kind 'meta') in the backup's commit. A row
-- left by a writer that died is settled by the next open: the part is applied with the
-- commit that names it, or removed from the store if no commit does.
CREATE TABLE sealing_parts (
    pack       BLOB PRIMARY KEY,               -- the metadata part's name
    started_ns INTEGER NOT NULL
) WITHOUT ROWID;

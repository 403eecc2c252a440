//! POSIX ACLs as tar carries them. A point keeps a file's ACLs as the xattrs Linux shows
//! them as (`system.posix_acl_access`, `system.posix_acl_default`), in the kernel's binary
//! form; GNU tar's `--acls` reads them from the text records `SCHILY.acl.access` and
//! `SCHILY.acl.default` (and, given those records are missing, replaces the ACL the xattrs
//! set with one made from the mode). So dump writes both, as GNU tar does.
//!
//! The binary form: a little-endian `u32` version (2), then 8-byte entries of `u16` tag,
//! `u16` permissions (r 4, w 2, x 1) and `u32` id (of a named user or group).

/// The xattr names of the two ACLs, and the tar record each is also written as.
pub const ACL_RECORDS: [(&[u8], &[u8]); 2] = [
    (b"system.posix_acl_access", b"SCHILY.acl.access"),
    (b"system.posix_acl_default", b"SCHILY.acl.default"),
];

const VERSION: u32 = 2;

/// The text form (`user::rw-\nuser:1000:r--\n…`, ids as numbers, as `getfacl -n` prints
/// them) of an ACL in the kernel's binary form; `None` if it is not that form.
pub fn acl_text(binary: &[u8]) -> Option<Vec<u8>> {
    let (version, entries) = binary.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*version) != VERSION || entries.len() % 8 != 0 {
        return None;
    }
    let mut text = Vec::new();
    for entry in entries.chunks_exact(8) {
        let tag = u16::from_le_bytes([entry[0], entry[1]]);
        let perm = u16::from_le_bytes([entry[2], entry[3]]);
        let id = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
        let qualified = match tag {
            0x01 => "user::".to_string(),
            0x02 => format!("user:{id}:"),
            0x04 => "group::".to_string(),
            0x08 => format!("group:{id}:"),
            0x10 => "mask::".to_string(),
            0x20 => "other::".to_string(),
            _ => return None,
        };
        text.extend_from_slice(qualified.as_bytes());
        for (bit, mark) in [(4, b'r'), (2, b'w'), (1, b'x')] {
            text.push(if perm & bit != 0 { mark } else { b'-' });
        }
        text.push(b'\n');
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut out = VERSION.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&perm.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    #[test]
    fn binary_acls_read_as_getfacl_prints_them() {
        let none = u32::MAX;
        let acl = binary(&[
            (0x01, 6, none),
            (0x02, 6, 1234),
            (0x04, 4, none),
            (0x08, 5, 55),
            (0x10, 7, none),
            (0x20, 0, none),
        ]);
        assert_eq!(
            String::from_utf8(acl_text(&acl).unwrap()).unwrap(),
            "user::rw-\nuser:1234:rw-\ngroup::r--\ngroup:55:r-x\nmask::rwx\nother::---\n"
        );
    }

    #[test]
    fn what_is_not_an_acl_has_no_text() {
        assert_eq!(acl_text(b""), None);
        assert_eq!(acl_text(&[1, 0, 0, 0]), None, "version 1");
        assert_eq!(acl_text(&[2, 0, 0, 0, 1]), None, "a torn entry");
        assert_eq!(acl_text(&binary(&[(0x40, 7, 0)])), None, "an unknown tag");
    }
}

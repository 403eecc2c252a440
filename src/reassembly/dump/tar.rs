//! The tar format as `dump` writes it: POSIX ustar headers, each preceded by a PAX extended
//! header (`x`) when the member needs more than ustar holds, and GNU's PAX sparse format 1.0
//! for files with holes. It is what `tar --format=pax --sparse --sparse-version=1.0 --xattrs
//! --acls` writes, so GNU tar extracts everything, and other PAX readers all but the holes.
//!
//! A ustar header is one 512-byte block:
//!
//! ```text
//! offset  size  field
//!      0   100  name          (the part after `prefix`; raw bytes, NUL-padded)
//!    100     8  mode          numeric fields: octal digits and a NUL, or GNU base-256
//!    108     8  uid           (first byte 0x80, then big-endian) when octal cannot hold
//!    116     8  gid           the value
//!    124    12  size          bytes of data that follow, padded to whole blocks
//!    136    12  mtime         seconds
//!    148     8  chksum        sum of the header's bytes with this field as spaces
//!    156     1  typeflag      0 file, 1 hardlink, 2 symlink, 3 char, 4 block, 5 dir, 6 fifo,
//!                             x PAX header of the next member
//!    157   100  linkname      symlink target or hardlinked name
//!    257     6  magic         "ustar\0"
//!    263     2  version       "00"
//!    265    32  uname, 297 32 gname (empty: dump knows owners by number only)
//!    329     8  devmajor, 337 8 devminor
//!    345   155  prefix        leading directories of a long name
//! ```
//!
//! A PAX header's data is records `"<len> <key>=<value>\n"`, `len` counting the whole
//! record, values raw bytes. Names that fit ustar stay there as raw bytes; longer ones go in
//! `path`/`linkpath`, also raw (GNU tar keeps bytes that are not UTF-8 as they are, and warns
//! about a `hdrcharset` record, so none is written).

use std::io::{self, Write};

/// The unit of a tar archive.
pub const BLOCK: usize = 512;
/// Archives are padded to whole records of 20 blocks, as GNU tar writes them.
const RECORD: u64 = 20 * BLOCK as u64;

/// Type flags of the members dump writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeFlag {
    File,
    HardLink,
    Symlink,
    CharDev,
    BlockDev,
    Dir,
    Fifo,
    Pax,
}

impl TypeFlag {
    fn byte(self) -> u8 {
        match self {
            TypeFlag::File => b'0',
            TypeFlag::HardLink => b'1',
            TypeFlag::Symlink => b'2',
            TypeFlag::CharDev => b'3',
            TypeFlag::BlockDev => b'4',
            TypeFlag::Dir => b'5',
            TypeFlag::Fifo => b'6',
            TypeFlag::Pax => b'x',
        }
    }
}

/// One member's header: what its ustar block and PAX records say. `records` holds what only
/// PAX can say (xattrs, ACLs, sparse maps); [`Member::write_header`] adds the `path`,
/// `linkpath`, `size`, `uid`, `gid` and time records where ustar falls short.
#[derive(Clone, Debug)]
pub struct Member {
    pub path: Vec<u8>,
    pub flag: TypeFlag,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    /// Bytes of data that follow the header in the archive.
    pub size: u64,
    /// A symlink's target or the name a hardlink links to.
    pub link: Vec<u8>,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Member {
    /// A member of kind `flag` named `path`, every other field empty.
    pub fn new(path: Vec<u8>, flag: TypeFlag) -> Member {
        Member {
            path,
            flag,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            size: 0,
            link: Vec::new(),
            dev_major: 0,
            dev_minor: 0,
            records: Vec::new(),
        }
    }

    /// The header blocks of this member (a PAX header first if it needs one), ready to write.
    pub fn header_blocks(&self) -> Vec<u8> {
        let mut records = Vec::new();
        let split = split_name(&self.path);
        if split.is_none() {
            push_record(&mut records, b"path", &self.path);
        }
        if self.link.len() > 100 {
            push_record(&mut records, b"linkpath", &self.link);
        }
        for (key, value, width) in [
            (&b"size"[..], self.size, 12),
            (b"uid", u64::from(self.uid), 8),
            (b"gid", u64::from(self.gid), 8),
        ] {
            if !fits_octal(value, width) {
                push_record(&mut records, key, value.to_string().as_bytes());
            }
        }
        let (secs, nanos) = split_ns(self.mtime_ns);
        if nanos != 0 || !(0..=MAX_OCTAL_12).contains(&secs) {
            let time = pax_time(self.mtime_ns);
            // No atime is kept: as restore does, the file gets its mtime as atime too.
            push_record(&mut records, b"mtime", time.as_bytes());
            push_record(&mut records, b"atime", time.as_bytes());
        }
        for (key, value) in &self.records {
            push_record(&mut records, key, value);
        }
        let mut out = Vec::with_capacity(2 * BLOCK + records.len());
        if !records.is_empty() {
            let mut pax = Member::new(pax_header_name(&self.path), TypeFlag::Pax);
            pax.mode = 0o644;
            pax.mtime_ns = secs.clamp(0, MAX_OCTAL_12) * 1_000_000_000;
            pax.size = records.len() as u64;
            out.extend_from_slice(&pax.ustar_block(split_name(&pax.path)));
            out.extend_from_slice(&records);
            out.resize(out.len() + padding(records.len() as u64), 0);
        }
        out.extend_from_slice(&self.ustar_block(split));
        out
    }

    /// The ustar block; a name that does not fit (`split` is `None`) is cut, its whole form
    /// being in the PAX header.
    fn ustar_block(&self, split: Option<(&[u8], &[u8])>) -> [u8; BLOCK] {
        let mut block = [0u8; BLOCK];
        let (prefix, name) = split.unwrap_or((&[], &self.path[..self.path.len().min(100)]));
        put(&mut block[0..100], name);
        put_number(&mut block[100..108], u64::from(self.mode & 0o7777));
        put_number(&mut block[108..116], u64::from(self.uid));
        put_number(&mut block[116..124], u64::from(self.gid));
        put_number(&mut block[124..136], self.size);
        let secs = split_ns(self.mtime_ns).0.clamp(0, i64::MAX);
        put_number(&mut block[136..148], secs as u64);
        block[156] = self.flag.byte();
        put(&mut block[157..257], &self.link[..self.link.len().min(100)]);
        put(&mut block[257..263], b"ustar\0");
        put(&mut block[263..265], b"00");
        put_number(&mut block[329..337], u64::from(self.dev_major));
        put_number(&mut block[337..345], u64::from(self.dev_minor));
        put(&mut block[345..500], prefix);
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        put(&mut block[148..156], format!("{sum:06o}\0 ").as_bytes());
        block
    }
}

/// Largest value of a 12-byte octal field (11 digits).
const MAX_OCTAL_12: i64 = 0o77777777777;

fn put(field: &mut [u8], bytes: &[u8]) {
    field[..bytes.len()].copy_from_slice(bytes);
}

fn fits_octal(value: u64, width: usize) -> bool {
    value < 1u64 << (3 * (width - 1))
}

/// Octal digits and a NUL, or GNU's base-256 form where the digits do not fit.
fn put_number(field: &mut [u8], value: u64) {
    let width = field.len();
    if fits_octal(value, width) {
        put(field, format!("{value:0w$o}\0", w = width - 1).as_bytes());
    } else {
        // Fields of 8 bytes hold 7 of the value (u32 ids and device numbers fit).
        let bytes = value.to_be_bytes();
        let kept = bytes.len().min(width - 1);
        field.fill(0);
        field[width - kept..].copy_from_slice(&bytes[bytes.len() - kept..]);
        field[0] = 0x80;
    }
}

/// Splits a name into ustar's prefix and name fields, at a `/`; `None` if it cannot fit.
fn split_name(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((&[], path));
    }
    // The leftmost cut that leaves at most 100 bytes (and at least one) for the name.
    let at = path
        .iter()
        .enumerate()
        .position(|(i, &b)| b == b'/' && path.len() - i - 1 <= 100)?;
    let name = &path[at + 1..];
    (at <= 155 && !name.is_empty() && name != b"/").then(|| (&path[..at], name))
}

/// The name of a member's PAX header, as GNU tar makes it: `PaxHeaders/` in the member's
/// directory, cut to fit. Readers that know PAX never use it.
fn pax_header_name(path: &[u8]) -> Vec<u8> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    let base = trimmed.rsplit(|&b| b == b'/').next().unwrap_or(trimmed);
    let mut name = b"PaxHeaders/".to_vec();
    name.extend_from_slice(&base[..base.len().min(80)]);
    name
}

/// Appends one PAX record: its length counts itself, so the digits are found by trying.
pub fn push_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Seconds and nanoseconds (0..1e9) of a time in ns.
fn split_ns(ns: i64) -> (i64, i64) {
    (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

/// A PAX time: seconds, and a fraction when there is one (`-1.5` is half a second before
/// the second before the epoch, as GNU tar reads it).
fn pax_time(ns: i64) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let abs = ns.unsigned_abs();
    let (secs, nanos) = (abs / 1_000_000_000, abs % 1_000_000_000);
    match nanos {
        0 => format!("{sign}{secs}"),
        _ => format!("{sign}{secs}.{nanos:09}"),
    }
}

/// Zero bytes that bring `len` bytes of data to whole blocks.
pub fn padding(len: u64) -> usize {
    ((BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64) as usize
}

/// The PAX records and the map that start a sparse file of format 1.0, and the name its
/// ustar header carries for readers that do not know the format. `segments` are the
/// (offset, length) runs of data in ascending order; what lies between them is holes.
pub struct SparseLayout {
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
    /// The map (count, then offset and length of each run, in decimal lines), padded to whole
    /// blocks: the first bytes of the member's data.
    pub map: Vec<u8>,
    pub stand_in_name: Vec<u8>,
}

/// How `path`, a file of `real_size` bytes holding data at `segments`, is laid out as a
/// sparse member. A file that ends in a hole ends its map with a run of no bytes at its end,
/// so the extracted file gets its full length.
pub fn sparse_layout(path: &[u8], real_size: u64, segments: &[(u64, u64)]) -> SparseLayout {
    let mut runs = segments.to_vec();
    if runs.last().is_none_or(|&(at, len)| at + len < real_size) {
        runs.push((real_size, 0));
    }
    let mut map = format!("{}\n", runs.len()).into_bytes();
    for (at, len) in &runs {
        map.extend_from_slice(format!("{at}\n{len}\n").as_bytes());
    }
    map.resize(map.len() + padding(map.len() as u64), 0);
    let mut records = Vec::new();
    for (key, value) in [
        (&b"GNU.sparse.major"[..], &b"1"[..]),
        (b"GNU.sparse.minor", b"0"),
        (b"GNU.sparse.name", path),
        (b"GNU.sparse.realsize", real_size.to_string().as_bytes()),
    ] {
        records.push((key.to_vec(), value.to_vec()));
    }
    SparseLayout {
        records,
        map,
        stand_in_name: sparse_stand_in(path),
    }
}

/// `dir/GNUSparseFile.0/name`, the name GNU tar gives a sparse member's ustar header, cut to
/// fit ustar when the path is long (the real name is in `GNU.sparse.name`).
fn sparse_stand_in(path: &[u8]) -> Vec<u8> {
    let (dir, base) = match path.iter().rposition(|&b| b == b'/') {
        Some(at) => (&path[..=at], &path[at + 1..]),
        None => (&[][..], path),
    };
    let mut name = dir.to_vec();
    name.extend_from_slice(b"GNUSparseFile.0/");
    name.extend_from_slice(base);
    if split_name(&name).is_some() {
        return name;
    }
    let mut short = b"GNUSparseFile.0/".to_vec();
    short.extend_from_slice(&base[..base.len().min(80)]);
    short
}

/// A writer that counts what passes through it, to end the archive on a whole record.
pub struct Counted<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Counted<W> {
    pub fn new(inner: W) -> Counted<W> {
        Counted { inner, written: 0 }
    }

    /// Writes the end of the archive: two zero blocks, then zeros to a whole record.
    pub fn finish(&mut self) -> io::Result<()> {
        let end = self.written + 2 * BLOCK as u64;
        let total = end.div_ceil(RECORD) * RECORD;
        let zeros = vec![0u8; (total - self.written) as usize];
        self.write_all(&zeros)
    }
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_count_their_own_length() {
        let mut out = Vec::new();
        push_record(&mut out, b"path", b"abc");
        assert_eq!(out, b"12 path=abc\n");
        // 98 bytes without the length: two digits would make 100, which needs three.
        out.clear();
        push_record(&mut out, b"k", &[b'x'; 94]);
        assert!(
            out.starts_with(b"101 k="),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(out.len(), 101);
        out.clear();
        push_record(&mut out, b"k", &[b'x'; 87]);
        assert!(out.starts_with(b"93 k="));
        assert_eq!(out.len(), 93);
    }

    #[test]
    fn numbers_are_octal_or_base_256() {
        let mut field = [0u8; 8];
        put_number(&mut field, 0o644);
        assert_eq!(&field, b"0000644\0");
        put_number(&mut field, 0o7777777 + 1);
        assert_eq!(field, [0x80, 0, 0, 0, 0, 0x20, 0, 0]);
        let mut size = [0u8; 12];
        put_number(&mut size, 1 << 40);
        assert_eq!(size, [0x80, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn long_names_split_at_a_slash_or_go_to_pax() {
        let dir = vec![b'd'; 120];
        let mut path = dir.clone();
        path.extend_from_slice(b"/file");
        assert_eq!(split_name(&path), Some((&dir[..], &b"file"[..])));
        let one_long_name = vec![b'n'; 101];
        assert_eq!(split_name(&one_long_name), None);
        let member = Member::new(one_long_name.clone(), TypeFlag::File);
        let blocks = member.header_blocks();
        assert_eq!(blocks.len(), 3 * BLOCK, "pax header, its data, the header");
        assert_eq!(blocks[156], b'x');
        let mut record = Vec::new();
        push_record(&mut record, b"path", &one_long_name);
        assert!(blocks[BLOCK..].starts_with(&record));
    }

    #[test]
    fn times_with_a_fraction_go_to_pax_with_nine_digits() {
        assert_eq!(pax_time(1_500_000_000_000_000_001), "1500000000.000000001");
        assert_eq!(pax_time(-1_500_000_000), "-1.500000000");
        assert_eq!(pax_time(7_000_000_000), "7");
        let mut member = Member::new(b"f".to_vec(), TypeFlag::File);
        member.mtime_ns = 7_000_000_000;
        assert_eq!(
            member.header_blocks().len(),
            BLOCK,
            "whole seconds fit ustar"
        );
        member.mtime_ns += 5;
        let blocks = member.header_blocks();
        let records = b"21 mtime=7.000000005\n21 atime=7.000000005\n";
        assert!(blocks.windows(records.len()).any(|w| w == records));
    }

    #[test]
    fn the_checksum_is_the_sum_of_the_header_with_spaces_in_its_field() {
        let member = Member::new(b"dir/".to_vec(), TypeFlag::Dir);
        let block = member.header_blocks();
        let stored = u32::from_str_radix(std::str::from_utf8(&block[148..154]).unwrap(), 8);
        let mut blanked = block.clone();
        blanked[148..156].fill(b' ');
        let sum: u32 = blanked.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(stored, Ok(sum));
    }

    #[test]
    fn a_sparse_map_is_gnu_format_1_0_and_ends_a_trailing_hole() {
        let layout = sparse_layout(b"./a/sp", 3 << 20, &[(0, 4096), (1 << 20, 4096)]);
        assert!(layout
            .map
            .starts_with(b"3\n0\n4096\n1048576\n4096\n3145728\n0\n\0"));
        assert_eq!(layout.map.len(), BLOCK);
        assert_eq!(layout.stand_in_name, b"./a/GNUSparseFile.0/sp");
        assert!(layout
            .records
            .contains(&(b"GNU.sparse.realsize".to_vec(), b"3145728".to_vec())));
        let ends_in_data = sparse_layout(b"sp", 8192, &[(4096, 4096)]);
        assert!(ends_in_data.map.starts_with(b"1\n4096\n4096\n\0"));
    }

    #[test]
    fn an_archive_ends_on_a_whole_record() {
        let mut out = Counted::new(Vec::new());
        out.write_all(&[1; BLOCK]).unwrap();
        out.finish().unwrap();
        assert_eq!(out.inner.len() as u64, RECORD);
        assert!(out.inner[BLOCK..].iter().all(|&b| b == 0));
    }
}

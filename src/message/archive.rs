//! What an archive attachment holds, read from its headers only: member
//! names and whether anything is password-protected, for zip, RAR (1.5–4
//! and 5) and 7z. Nothing is decompressed, extracted or run; every length
//! read from the file is bounds-checked, so a damaged or hostile archive
//! ends the listing (flagged `broken`) instead of failing the message.
//!
//! 7z keeps its member list in a header that 7-Zip compresses by default,
//! so for 7z only the encryption flag is read: the AES-256 coder id appears
//! in the header's coder list both when the members are encrypted and when
//! the header itself is.

use std::io::Cursor;

/// What an archive holds, as far as its headers tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveListing {
    /// Member names as stored (at most the limit given).
    pub names: Vec<String>,
    /// A member, or the member list itself, is password-protected.
    pub encrypted: bool,
    /// A header could not be read; `names` holds what came before it.
    pub broken: bool,
}

/// Archive formats [`listing`] reads.
pub fn is_listable(kind: &str) -> bool {
    matches!(kind, "zip" | "rar" | "7z")
}

/// Lists an archive of type `kind` (a [`super::sniff::sniff`] name); `None`
/// for a type that is not a listable archive.
pub fn listing(kind: &str, data: &[u8], max_names: usize) -> Option<ArchiveListing> {
    Some(match kind {
        "zip" => zip(data, max_names),
        "rar" => rar(data, max_names),
        "7z" => seven_zip(data),
        _ => return None,
    })
}

/// Members of a zip archive, from its central directory.
pub fn zip(data: &[u8], max_names: usize) -> ArchiveListing {
    let mut listing = ArchiveListing::default();
    let Ok(mut archive) = ::zip::ZipArchive::new(Cursor::new(data)) else {
        listing.broken = true;
        return listing;
    };
    for i in 0..archive.len().min(max_names) {
        match archive.by_index_raw(i) {
            Ok(file) => {
                listing.encrypted |= file.encrypted();
                listing.names.push(file.name().to_string());
            }
            Err(_) => {
                listing.broken = true;
                break;
            }
        }
    }
    listing
}

const RAR5_SIGNATURE: &[u8] = b"Rar!\x1A\x07\x01\x00";
const RAR4_SIGNATURE: &[u8] = b"Rar!\x1A\x07\x00";
/// Most blocks walked in one RAR archive (members, service and end blocks).
const MAX_RAR_BLOCKS: usize = 10_000;

/// Members of a RAR archive (format 5, or 1.5–4), walking its block headers.
pub fn rar(data: &[u8], max_names: usize) -> ArchiveListing {
    if let Some(rest) = data.strip_prefix(RAR5_SIGNATURE) {
        rar5(rest, max_names)
    } else if let Some(rest) = data.strip_prefix(RAR4_SIGNATURE) {
        rar4(rest, max_names)
    } else {
        ArchiveListing {
            broken: true,
            ..ArchiveListing::default()
        }
    }
}

/// A bounds-checked little-endian reader over a byte slice.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Option<u64> {
        self.bytes(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("eight bytes")))
    }

    /// RAR 5 variable-length integer: 7 bits per byte, low bits first, the
    /// high bit set on every byte but the last; at most 10 bytes.
    fn vint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            value |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
}

/// `n` as an offset, when it fits.
fn offset(n: u64) -> Option<usize> {
    usize::try_from(n).ok()
}

fn rar5(data: &[u8], max_names: usize) -> ArchiveListing {
    const FILE: u64 = 2;
    const ENCRYPTION: u64 = 4;
    const END: u64 = 5;
    const HAS_EXTRA: u64 = 0x01;
    const HAS_DATA: u64 = 0x02;
    const FILE_HAS_TIME: u64 = 0x02;
    const FILE_HAS_CRC: u64 = 0x04;
    const EXTRA_ENCRYPTION: u64 = 0x01;

    let mut listing = ArchiveListing::default();
    let mut at = 0usize;
    for _ in 0..MAX_RAR_BLOCKS {
        if at == data.len() {
            break;
        }
        let block = (|| {
            let mut r = Reader::new(data.get(at..)?);
            r.u32()?; // header CRC
            let size = offset(r.vint()?)?;
            let body_start = r.pos;
            let header = r.bytes(size)?;
            let mut h = Reader::new(header);
            let kind = h.vint()?;
            let flags = h.vint()?;
            let extra_size = if flags & HAS_EXTRA != 0 {
                offset(h.vint()?)?
            } else {
                0
            };
            let data_size = if flags & HAS_DATA != 0 {
                offset(h.vint()?)?
            } else {
                0
            };
            let next = at
                .checked_add(body_start)?
                .checked_add(size)?
                .checked_add(data_size)?;
            let mut entry = None;
            if kind == FILE {
                let file_flags = h.vint()?;
                h.vint()?; // unpacked size
                h.vint()?; // attributes
                if file_flags & FILE_HAS_TIME != 0 {
                    h.u32()?;
                }
                if file_flags & FILE_HAS_CRC != 0 {
                    h.u32()?;
                }
                h.vint()?; // compression information
                h.vint()?; // host OS
                let name_len = offset(h.vint()?)?;
                let name = String::from_utf8_lossy(h.bytes(name_len)?).into_owned();
                // The extra area is the last `extra_size` bytes of the header.
                let extra = header.get(header.len().checked_sub(extra_size)?..)?;
                let mut e = Reader::new(extra);
                let mut encrypted = false;
                while e.pos < extra.len() {
                    let record_size = offset(e.vint()?)?;
                    let record = e.bytes(record_size)?;
                    if Reader::new(record).vint()? == EXTRA_ENCRYPTION {
                        encrypted = true;
                    }
                }
                entry = Some((name, encrypted));
            }
            Some((kind, next, entry))
        })();
        let Some((kind, next, entry)) = block else {
            listing.broken = true;
            break;
        };
        if let Some((name, encrypted)) = entry {
            listing.encrypted |= encrypted;
            if listing.names.len() < max_names {
                listing.names.push(name);
            }
        }
        match kind {
            // Every header after this one is encrypted: nothing more to read.
            ENCRYPTION => {
                listing.encrypted = true;
                break;
            }
            END => break,
            _ => {}
        }
        if next > data.len() {
            // A member's data runs past the end: a cut-off attachment.
            listing.broken = true;
            break;
        }
        at = next;
    }
    listing
}

fn rar4(data: &[u8], max_names: usize) -> ArchiveListing {
    const MAIN: u8 = 0x73;
    const FILE: u8 = 0x74;
    const END: u8 = 0x7B;
    const MAIN_HEADERS_ENCRYPTED: u16 = 0x0080;
    const FILE_ENCRYPTED: u16 = 0x0004;
    const FILE_LARGE: u16 = 0x0100;
    const FILE_UNICODE_NAME: u16 = 0x0200;
    const HAS_ADD_SIZE: u16 = 0x8000;

    let mut listing = ArchiveListing::default();
    let mut at = 0usize;
    for _ in 0..MAX_RAR_BLOCKS {
        if at == data.len() {
            break;
        }
        let block = (|| {
            let mut r = Reader::new(data.get(at..)?);
            r.u16()?; // header CRC
            let kind = r.u8()?;
            let flags = r.u16()?;
            let size = usize::from(r.u16()?);
            if size < 7 {
                return None;
            }
            let header = data.get(at..at.checked_add(size)?)?;
            let mut h = Reader::new(header);
            h.bytes(7)?;
            let mut added = 0u64;
            let mut entry = None;
            if kind == FILE {
                let pack_low = h.u32()?;
                h.bytes(4 + 1 + 4 + 4 + 1 + 1)?; // unpacked size … method
                let name_len = usize::from(h.u16()?);
                h.u32()?; // attributes
                let pack_high = if flags & FILE_LARGE != 0 {
                    let high = h.u32()?;
                    h.u32()?;
                    high
                } else {
                    0
                };
                added = u64::from(pack_high) << 32 | u64::from(pack_low);
                let raw = h.bytes(name_len)?;
                // A Unicode name is stored as "ascii\0encoded": keep the
                // plain part, which archivers fill with a readable form.
                let raw = if flags & FILE_UNICODE_NAME != 0 {
                    raw.split(|&b| b == 0).next().unwrap_or(raw)
                } else {
                    raw
                };
                entry = Some((
                    String::from_utf8_lossy(raw).into_owned(),
                    flags & FILE_ENCRYPTED != 0,
                ));
            } else if flags & HAS_ADD_SIZE != 0 {
                added = u64::from(h.u32()?);
            }
            let next = at.checked_add(size)?.checked_add(offset(added)?)?;
            Some((kind, flags, next, entry))
        })();
        let Some((kind, flags, next, entry)) = block else {
            listing.broken = true;
            break;
        };
        if let Some((name, encrypted)) = entry {
            listing.encrypted |= encrypted;
            if listing.names.len() < max_names {
                listing.names.push(name);
            }
        }
        if kind == MAIN && flags & MAIN_HEADERS_ENCRYPTED != 0 {
            listing.encrypted = true;
            break;
        }
        if kind == END {
            break;
        }
        if next > data.len() {
            listing.broken = true;
            break;
        }
        at = next;
    }
    listing
}

const SEVEN_ZIP_SIGNATURE: &[u8] = b"7z\xBC\xAF\x27\x1C";
/// 7-Zip's method id for AES-256 + SHA-256 key derivation.
const SEVEN_ZIP_AES: &[u8] = b"\x06\xF1\x07\x01";

/// Whether a 7z archive is password-protected, from its end header.
pub fn seven_zip(data: &[u8]) -> ArchiveListing {
    let header = (|| {
        let mut r = Reader::new(data);
        if r.bytes(6)? != SEVEN_ZIP_SIGNATURE {
            return None;
        }
        r.bytes(2 + 4)?; // version, start header CRC
        let next_offset = offset(r.u64()?)?;
        let next_size = offset(r.u64()?)?;
        let start = 32usize.checked_add(next_offset)?;
        data.get(start..start.checked_add(next_size)?)
    })();
    match header {
        Some(h) => ArchiveListing {
            encrypted: h.windows(SEVEN_ZIP_AES.len()).any(|w| w == SEVEN_ZIP_AES),
            ..ArchiveListing::default()
        },
        None => ArchiveListing {
            broken: true,
            ..ArchiveListing::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_zip_members() {
        use std::io::Write;
        let mut buf = Cursor::new(Vec::new());
        {
            let mut w = ::zip::ZipWriter::new(&mut buf);
            let opts = ::zip::write::SimpleFileOptions::default();
            w.start_file("invoice.pdf.exe", opts).unwrap();
            w.write_all(b"MZ").unwrap();
            w.finish().unwrap();
        }
        let l = zip(buf.get_ref(), 100);
        assert_eq!(l.names, vec!["invoice.pdf.exe".to_string()]);
        assert!(!l.encrypted && !l.broken);
        assert!(zip(b"PK\x03\x04junk", 10).broken);
    }

    fn vint(mut n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (n & 0x7F) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    /// A RAR 5 block: CRC (not checked by the reader), size, then `body`
    /// (type, flags, …), then `data` bytes.
    fn rar5_block(body: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 0, 0];
        out.extend(vint(body.len() as u64));
        out.extend(body);
        out.extend(data);
        out
    }

    fn rar5_file(name: &str, content: &[u8], encrypted: bool) -> Vec<u8> {
        let extra = if encrypted {
            // One record: size, type 1 (encryption), version, flags, then
            // (truncated here) the key material the reader does not need.
            let record = [vec![0x01, 0x00, 0x00], vec![0u8; 16]].concat();
            [vint(record.len() as u64), record].concat()
        } else {
            Vec::new()
        };
        let mut body = vint(2); // file header
        let flags = 0x02 | if extra.is_empty() { 0 } else { 0x01 };
        body.extend(vint(flags));
        if !extra.is_empty() {
            body.extend(vint(extra.len() as u64));
        }
        body.extend(vint(content.len() as u64)); // data size
        body.extend(vint(0x04)); // file flags: CRC present
        body.extend(vint(content.len() as u64)); // unpacked size
        body.extend(vint(0x20)); // attributes
        body.extend([0xAA, 0xBB, 0xCC, 0xDD]); // CRC32
        body.extend(vint(0)); // compression: stored
        body.extend(vint(0)); // host OS: Windows
        body.extend(vint(name.len() as u64));
        body.extend(name.as_bytes());
        body.extend(extra);
        rar5_block(&body, content)
    }

    fn rar5(blocks: &[Vec<u8>]) -> Vec<u8> {
        let main = rar5_block(&[vint(1), vint(0), vint(0)].concat(), b"");
        let end = rar5_block(&[vint(5), vint(0), vint(0)].concat(), b"");
        [RAR5_SIGNATURE.to_vec(), main, blocks.concat(), end].concat()
    }

    #[test]
    fn lists_rar5_members_and_encryption() {
        let plain = rar5(&[
            rar5_file("docs/readme.txt", b"hello", false),
            rar5_file("setup.exe", b"MZ\x90\x00", false),
        ]);
        let l = rar(&plain, 100);
        assert_eq!(l.names, ["docs/readme.txt", "setup.exe"]);
        assert!(!l.encrypted && !l.broken, "{l:?}");

        let locked = rar5(&[
            rar5_file("a.txt", b"x", false),
            rar5_file("invoice.js", b"secret", true),
        ]);
        let l = rar(&locked, 100);
        assert_eq!(l.names, ["a.txt", "invoice.js"]);
        assert!(l.encrypted && !l.broken, "{l:?}");

        // Headers encrypted: an archive encryption block comes first and
        // nothing after it is readable.
        let hidden = [
            RAR5_SIGNATURE.to_vec(),
            rar5_block(&[vint(4), vint(0), vint(0), vec![0u8; 17]].concat(), b""),
            vec![0x5A; 64],
        ]
        .concat();
        let l = rar(&hidden, 100);
        assert!(l.encrypted && l.names.is_empty() && !l.broken, "{l:?}");

        // The limit on names still reports encryption further on.
        let l = rar(&locked, 1);
        assert_eq!(l.names, ["a.txt"]);
        assert!(l.encrypted);
    }

    fn rar4_file(name: &str, content: &[u8], flags: u16) -> Vec<u8> {
        let size = (7 + 25 + name.len()) as u16;
        let mut out = vec![0, 0, 0x74];
        out.extend((flags | 0x8000).to_le_bytes());
        out.extend(size.to_le_bytes());
        out.extend((content.len() as u32).to_le_bytes()); // packed
        out.extend((content.len() as u32).to_le_bytes()); // unpacked
        out.push(2); // host OS
        out.extend([0u8; 4]); // CRC
        out.extend([0u8; 4]); // time
        out.push(29); // version
        out.push(0x30); // method: store
        out.extend((name.len() as u16).to_le_bytes());
        out.extend(0x20u32.to_le_bytes());
        out.extend(name.as_bytes());
        out.extend(content);
        out
    }

    fn rar4(main_flags: u16, files: &[Vec<u8>]) -> Vec<u8> {
        let mut main = vec![0, 0, 0x73];
        main.extend(main_flags.to_le_bytes());
        main.extend(13u16.to_le_bytes());
        main.extend([0u8; 6]);
        let end = vec![0, 0, 0x7B, 0x00, 0x40, 7, 0];
        [RAR4_SIGNATURE.to_vec(), main, files.concat(), end].concat()
    }

    #[test]
    fn lists_rar4_members_and_encryption() {
        let plain = rar4(0, &[rar4_file("photo.jpg.scr", b"MZ", 0)]);
        let l = rar(&plain, 100);
        assert_eq!(l.names, ["photo.jpg.scr"]);
        assert!(!l.encrypted && !l.broken, "{l:?}");

        let locked = rar4(
            0,
            &[
                rar4_file("a.txt", b"x", 0),
                rar4_file("b.exe", b"yy", 0x0004),
            ],
        );
        let l = rar(&locked, 100);
        assert_eq!(l.names, ["a.txt", "b.exe"]);
        assert!(l.encrypted && !l.broken, "{l:?}");

        // A Unicode name keeps its plain part.
        let l = rar(
            &rar4(0, &[rar4_file("fattura.exe\0\x01\x02", b"", 0x0200)]),
            9,
        );
        assert_eq!(l.names, ["fattura.exe"]);

        let hidden = rar4(0x0080, &[vec![0x5A; 40]]);
        let l = rar(&hidden, 100);
        assert!(l.encrypted && l.names.is_empty() && !l.broken, "{l:?}");
    }

    #[test]
    fn damaged_archives_are_broken_not_fatal() {
        let plain = rar5(&[rar5_file("readme.txt", b"hello world", false)]);
        for cut in 0..plain.len() {
            assert!(rar(&plain[..cut], 100).names.len() <= 1);
        }
        // Cut inside the member's data (the end block is 8 bytes).
        let l = rar(&plain[..plain.len() - 8 - 5], 100);
        assert!(l.broken && l.names == ["readme.txt"], "{l:?}");
        let old = rar4(0, &[rar4_file("a.exe", b"MZ", 0)]);
        for cut in 0..old.len() {
            rar(&old[..cut], 100);
        }
        // A size field pointing far beyond the data, and a vint that never
        // ends, are damage, not a panic or a long loop.
        let mut huge = RAR5_SIGNATURE.to_vec();
        huge.extend([0, 0, 0, 0]);
        huge.extend([0xFF; 12]);
        assert!(rar(&huge, 100).broken);
        assert!(rar(b"Rar!\x1A\x07\x05junk", 100).broken);
        assert!(seven_zip(b"7z\xBC\xAF\x27\x1C\x00\x04").broken);
    }

    #[test]
    fn seven_zip_encryption_from_fixtures() {
        // Made with 7-Zip 22: `7zz a plain.7z`, `7zz a -pX locked.7z`,
        // `7zz a -pX -mhe=on hidden.7z` over one small text file.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/archives");
        let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
        let plain = seven_zip(&read("plain.7z"));
        assert!(!plain.encrypted && !plain.broken, "{plain:?}");
        let locked = seven_zip(&read("locked.7z"));
        assert!(locked.encrypted && !locked.broken, "{locked:?}");
        let hidden = seven_zip(&read("hidden.7z"));
        assert!(hidden.encrypted && !hidden.broken, "{hidden:?}");
        let zipped = zip(&read("locked.zip"), 10);
        assert!(zipped.encrypted, "{zipped:?}");
        assert_eq!(zipped.names, ["note.txt"]);
    }
}

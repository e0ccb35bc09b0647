//! File types from magic bytes. Reads decoded attachment bytes only; never
//! executes or extracts anything.

/// A type recognised from the first bytes of a file. The names are what
/// reports show and what `scores/attachments.toml` refers to.
pub fn sniff(data: &[u8]) -> Option<&'static str> {
    let starts = |m: &[u8]| data.starts_with(m);
    let kind = if starts(b"MZ") {
        "pe"
    } else if starts(b"\x7fELF") {
        "elf"
    } else if starts(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1") {
        // OLE compound file: legacy Office documents and MSI installers.
        if contains(
            &data[..data.len().min(64 * 1024)],
            b"\x84\x10\x0C\x00\x00\x00\x00\x00\xC0\x00\x00\x00\x00\x00\x00\x46",
        ) {
            "msi"
        } else {
            "ole"
        }
    } else if starts(b"%PDF-") {
        "pdf"
    } else if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") {
        "zip"
    } else if starts(b"Rar!\x1A\x07") {
        "rar"
    } else if starts(b"7z\xBC\xAF\x27\x1C") {
        "7z"
    } else if starts(b"\x1F\x8B") {
        "gzip"
    } else if starts(b"MSCF") {
        "cab"
    } else if starts(b"L\x00\x00\x00\x01\x14\x02\x00") {
        "lnk"
    } else if starts(b"conectix") {
        "vhd"
    } else if starts(b"\x89PNG") {
        "png"
    } else if starts(b"\xFF\xD8\xFF") {
        "jpeg"
    } else if starts(b"GIF8") {
        "gif"
    } else if starts(b"{\\rtf") {
        "rtf"
    } else if starts(b"#!") {
        "script"
    } else if data.len() > 0x8006 && &data[0x8001..0x8006] == b"CD001" {
        "iso"
    } else if data.len() > 512 && data[data.len() - 512..].starts_with(b"koly") {
        "dmg"
    } else if looks_html(data) {
        "html"
    } else {
        return None;
    };
    Some(kind)
}

/// Types that run code when opened.
pub fn is_executable(kind: &str) -> bool {
    matches!(kind, "pe" | "elf" | "msi" | "lnk")
}

/// Disk images and installers that carry executables past mail filters.
pub fn is_container(kind: &str) -> bool {
    matches!(kind, "iso" | "vhd" | "dmg" | "cab")
}

fn looks_html(data: &[u8]) -> bool {
    let head = &data[..data.len().min(512)];
    let lower: Vec<u8> = head.iter().map(u8::to_ascii_lowercase).collect();
    let trimmed = lower.trim_ascii_start();
    trimmed.starts_with(b"<!doctype html")
        || trimmed.starts_with(b"<html")
        || contains(&lower, b"<script")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_magic() {
        assert_eq!(sniff(b"MZ\x90\x00"), Some("pe"));
        assert_eq!(sniff(b"%PDF-1.7"), Some("pdf"));
        assert_eq!(sniff(b"\x7fELF\x02"), Some("elf"));
        assert_eq!(sniff(b"  <!DOCTYPE html><html>"), Some("html"));
        let mut iso = vec![0u8; 0x9000];
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        assert_eq!(sniff(&iso), Some("iso"));
        assert_eq!(sniff(b"hello"), None);
    }
}

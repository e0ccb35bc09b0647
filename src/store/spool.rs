//! The disk spool: where reports wait, in order, while the database is down
//! or slow. Append-only files of checksummed, length-prefixed frames,
//! fsync'd on every append; read back in order and deleted once replayed.
//! Blocking I/O: call it from a blocking thread. Knows nothing of SQL.
//!
//! Frame: `OSR1` | payload length (u32 LE) | first 8 bytes of the payload's
//! SHA-256 | payload. Payload: JSON length (u32 LE) | the report as JSON |
//! the raw message.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use tracing::warn;

use super::model::StoredReport;

const MAGIC: &[u8; 4] = b"OSR1";
const HEADER: usize = 4 + 4 + 8;
/// A frame bigger than this is damage, not a report (the milter refuses
/// messages over 30 MB long before).
const MAX_FRAME: usize = 256 * 1024 * 1024;
const PREFIX: &str = "reports-";
const SUFFIX: &str = ".spool";

/// A spool failure, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("spool {path}: cannot encode report {id}: {detail}")]
    Encode {
        path: PathBuf,
        id: String,
        detail: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The spool directory. Appends are serialised by an internal lock.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    rotate_bytes: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    current: Option<Current>,
    next_seq: u64,
}

#[derive(Debug)]
struct Current {
    path: PathBuf,
    file: File,
    written: u64,
}

impl Spool {
    /// Open (creating) the spool directory. Files are rotated at about
    /// `rotate_bytes` so a replay can delete what it has inserted.
    pub fn open(dir: &Path, rotate_bytes: u64) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let next_seq = list(dir)?
            .last()
            .and_then(|p| seq_of(p))
            .map_or(1, |s| s + 1);
        Ok(Spool {
            dir: dir.to_path_buf(),
            rotate_bytes: rotate_bytes.max(1),
            state: Mutex::new(State {
                current: None,
                next_seq,
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Append reports and fsync. Returns once they are on disk.
    pub fn append(&self, reports: &[StoredReport]) -> Result<(), SpoolError> {
        if reports.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in reports {
            encode(r, &mut buf).map_err(|detail| SpoolError::Encode {
                path: self.dir.clone(),
                id: r.id.to_string(),
                detail,
            })?;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let rotate = state
            .current
            .as_ref()
            .is_none_or(|c| c.written >= self.rotate_bytes);
        if rotate {
            let seq = state.next_seq;
            state.next_seq += 1;
            let path = self.dir.join(format!("{PREFIX}{seq:020}{SUFFIX}"));
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(io_err(&path))?;
            // Make the new name durable too.
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
            state.current = Some(Current {
                path,
                file,
                written: 0,
            });
        }
        let current = state.current.as_mut().expect("current spool file");
        let result = current
            .file
            .write_all(&buf)
            .and_then(|()| current.file.sync_data());
        if let Err(e) = result {
            // Never append after a failed write: start a new file next time.
            let path = current.path.clone();
            state.current = None;
            return Err(io_err(&path)(e));
        }
        current.written += buf.len() as u64;
        Ok(())
    }

    /// Close the file being appended to and return every spool file, oldest
    /// first. New appends go to a new file, so the returned ones are stable.
    pub fn seal(&self) -> Result<Vec<PathBuf>, SpoolError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.current = None;
        list(&self.dir)
    }

    /// Whether anything waits to be replayed.
    pub fn has_pending(&self) -> Result<bool, SpoolError> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.current.is_some() {
            return Ok(true);
        }
        Ok(!list(&self.dir)?.is_empty())
    }

    /// Delete a replayed file.
    pub fn remove(&self, path: &Path) -> Result<(), SpoolError> {
        fs::remove_file(path).map_err(io_err(path))
    }

    /// Keep a file whose tail is damaged out of the replay, for inspection.
    pub fn set_aside(&self, path: &Path) -> Result<PathBuf, SpoolError> {
        let to = path.with_extension("damaged");
        fs::rename(path, &to).map_err(io_err(path))?;
        Ok(to)
    }
}

/// Spool files in the directory, oldest first.
fn list(dir: &Path) -> Result<Vec<PathBuf>, SpoolError> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| seq_of(p).is_some())
        .collect();
    files.sort_by_key(|p| seq_of(p));
    Ok(files)
}

fn seq_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

fn checksum(payload: &[u8]) -> [u8; 8] {
    let digest = Sha256::digest(payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

fn encode(report: &StoredReport, out: &mut Vec<u8>) -> Result<(), String> {
    let json = serde_json::to_vec(report).map_err(|e| e.to_string())?;
    let payload_len = 4 + json.len() + report.content.len();
    if payload_len > MAX_FRAME {
        return Err(format!("report of {payload_len} bytes exceeds {MAX_FRAME}"));
    }
    let mut payload = Vec::with_capacity(payload_len);
    payload.extend_from_slice(&(json.len() as u32).to_le_bytes());
    payload.extend_from_slice(&json);
    payload.extend_from_slice(&report.content);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(&payload));
    out.extend_from_slice(&payload);
    Ok(())
}

fn decode(payload: &[u8]) -> Result<StoredReport, String> {
    let len_bytes: [u8; 4] = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("payload too short")?;
    let json_len = u32::from_le_bytes(len_bytes) as usize;
    let json = payload
        .get(4..4 + json_len)
        .ok_or("JSON length past the payload")?;
    let mut report: StoredReport = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    report.content = payload[4 + json_len..].to_vec();
    Ok(report)
}

/// How a spool file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Every frame was whole.
    Clean,
    /// The first frame that was cut short or failed its checksum, at this
    /// byte offset; the whole frames after it were still read.
    Damaged { offset: u64, why: String },
}

/// Reads one spool file frame by frame.
pub struct SpoolReader {
    path: PathBuf,
    reader: BufReader<File>,
    /// Where the next frame starts.
    offset: u64,
    tail: Option<Tail>,
    /// The first damage met, reported as the tail at the end.
    damage: Option<Tail>,
}

impl SpoolReader {
    pub fn open(path: &Path) -> Result<SpoolReader, SpoolError> {
        let file = File::open(path).map_err(io_err(path))?;
        Ok(SpoolReader {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(256 * 1024, file),
            offset: 0,
            tail: None,
            damage: None,
        })
    }

    /// Up to `max` more reports, in the order written; empty at the end.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<StoredReport>, SpoolError> {
        let mut out = Vec::new();
        while out.len() < max && self.tail.is_none() {
            match self.next_frame()? {
                Some(r) => out.push(r),
                None => break,
            }
        }
        Ok(out)
    }

    /// How the file ended; `None` until the end was reached.
    pub fn tail(&self) -> Option<&Tail> {
        self.tail.as_ref()
    }

    /// Note the damage at the current frame (the first one is the tail
    /// reported at the end).
    fn note_damage(&mut self, why: String) {
        warn!(path = %self.path.display(), offset = self.offset, why = %why, "spool file damaged at this frame");
        if self.damage.is_none() {
            self.damage = Some(Tail::Damaged {
                offset: self.offset,
                why,
            });
        }
    }

    /// The file ended: clean, or with the first damage met.
    fn end(&mut self) -> Option<StoredReport> {
        self.tail = Some(self.damage.take().unwrap_or(Tail::Clean));
        None
    }

    /// Skip to the next frame marker after the damaged frame at `offset`;
    /// `false` when there is none (the rest of the file is unreadable).
    fn resync(&mut self) -> Result<bool, SpoolError> {
        let from = self.offset + 1;
        self.reader
            .seek(SeekFrom::Start(from))
            .map_err(io_err(&self.path))?;
        let mut window = [0u8; 4];
        let mut filled = 0usize;
        let mut pos = from;
        let mut byte = [0u8; 1];
        loop {
            if read_full(&mut self.reader, &mut byte).map_err(io_err(&self.path))? == 0 {
                return Ok(false);
            }
            pos += 1;
            window.rotate_left(1);
            window[3] = byte[0];
            filled = (filled + 1).min(4);
            if filled == 4 && &window == MAGIC {
                let start = pos - 4;
                warn!(path = %self.path.display(), from = self.offset, to = start, "skipped damaged bytes to the next frame");
                self.offset = start;
                self.reader
                    .seek(SeekFrom::Start(start))
                    .map_err(io_err(&self.path))?;
                return Ok(true);
            }
        }
    }

    /// The next whole frame; a damaged one is skipped (the replay goes on
    /// with the next frame marker), a file cut short ends the reading.
    fn next_frame(&mut self) -> Result<Option<StoredReport>, SpoolError> {
        loop {
            let mut header = [0u8; HEADER];
            let got = read_full(&mut self.reader, &mut header).map_err(io_err(&self.path))?;
            if got == 0 {
                return Ok(self.end());
            }
            if got < HEADER {
                self.note_damage(format!("frame header cut short ({got} bytes)"));
                return Ok(self.end());
            }
            let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
            let why = if &header[..4] != MAGIC {
                Some("bad frame marker".to_string())
            } else if len > MAX_FRAME {
                Some(format!("frame length {len} over the limit"))
            } else {
                None
            };
            if let Some(why) = why {
                self.note_damage(why);
                if self.resync()? {
                    continue;
                }
                return Ok(self.end());
            }
            let mut payload = vec![0u8; len];
            let got = read_full(&mut self.reader, &mut payload).map_err(io_err(&self.path))?;
            let why = if got < len {
                format!("frame cut short ({got} of {len} bytes)")
            } else if checksum(&payload)[..] != header[8..16] {
                "checksum mismatch".to_string()
            } else {
                match decode(&payload) {
                    Ok(report) => {
                        self.offset += (HEADER + len) as u64;
                        return Ok(Some(report));
                    }
                    Err(why) => format!("undecodable report: {why}"),
                }
            };
            self.note_damage(why);
            if !self.resync()? {
                return Ok(self.end());
            }
        }
    }
}

/// Read until `buf` is full or EOF; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
    use crate::scoring::ScanReport;

    fn report(i: usize) -> StoredReport {
        let env = Envelope {
            mail_from: format!("u{i}@example.com"),
            rcpts: vec!["a@example.net".into()],
            ..Envelope::default()
        };
        StoredReport::new(
            env,
            ScanReport::default(),
            None,
            "accept",
            format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes(),
        )
    }

    fn read_all(path: &Path) -> (Vec<StoredReport>, Tail) {
        let mut r = SpoolReader::open(path).unwrap();
        let mut all = Vec::new();
        for _ in 0..1000 {
            let batch = r.next_batch(7).unwrap();
            if batch.is_empty() {
                break;
            }
            all.extend(batch);
        }
        (all, r.tail().cloned().unwrap())
    }

    #[test]
    fn round_trip_in_order_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 200).unwrap();
        let reports: Vec<_> = (0..20).map(report).collect();
        for chunk in reports.chunks(3) {
            spool.append(chunk).unwrap();
        }
        let files = spool.seal().unwrap();
        assert!(files.len() > 1, "rotation should have made several files");
        let mut back = Vec::new();
        for f in &files {
            let (r, tail) = read_all(f);
            assert_eq!(tail, Tail::Clean);
            back.extend(r);
        }
        assert_eq!(back, reports);
        // A reopened spool continues the numbering after the last file.
        let again = Spool::open(dir.path(), 200).unwrap();
        again.append(&[report(99)]).unwrap();
        let files2 = again.seal().unwrap();
        assert_eq!(files2.len(), files.len() + 1);
        assert_eq!(files2[..files.len()], files[..]);
    }

    #[test]
    fn a_torn_tail_ends_the_replay_and_a_damaged_frame_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&[report(1), report(2), report(3)]).unwrap();
        let file = spool.seal().unwrap().remove(0);
        let full = fs::read(&file).unwrap();
        // Cut the last frame short, as a crash mid-write would.
        fs::write(&file, &full[..full.len() - 5]).unwrap();
        let (r, tail) = read_all(&file);
        assert_eq!(r.len(), 2);
        assert!(matches!(tail, Tail::Damaged { .. }), "{tail:?}");
        // Flip a byte inside the second frame's payload: that frame is
        // skipped, the first and third are still read.
        let mut bad = full.clone();
        let second = full.len() / 2;
        bad[second] ^= 0xff;
        fs::write(&file, &bad).unwrap();
        let (r, tail) = read_all(&file);
        assert_eq!(r.len(), 2, "the frames around the damage");
        let senders: Vec<&str> = r.iter().map(|r| r.envelope.mail_from.as_str()).collect();
        assert_eq!(senders, ["u1@example.com", "u3@example.com"]);
        assert!(matches!(tail, Tail::Damaged { .. }));
        // A frame torn mid-write, garbage, then whole frames again.
        let mut gap = full[..full.len() / 3 - 3].to_vec();
        gap.extend_from_slice(b"garbage OSR torn write");
        gap.extend_from_slice(&full);
        fs::write(&file, &gap).unwrap();
        let (r, tail) = read_all(&file);
        assert_eq!(r.len(), 3, "every whole frame after the gap");
        assert!(matches!(tail, Tail::Damaged { .. }));
        assert!(!spool.has_pending().unwrap() || spool.set_aside(&file).is_ok());
        assert!(!spool.has_pending().unwrap());
    }
}

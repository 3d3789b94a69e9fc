//! Segment files: the on-disk record format, recovery after a crash, and
//! reading single records back.
//!
//! A partition is a directory of segment files named after the offset and
//! the sequence number of their first record
//! (`00000000000000000000-00000000000000000000.seg`), so even an empty
//! segment says where the log continues. Each record is
//!
//! ```text
//! u32 length of the payload        (big-endian)
//! u32 CRC-32 of those four bytes   (a torn or damaged length is detected)
//! u32 CRC-32 of sequence, enqueued time and payload
//! i64 sequence number
//! i64 enqueued time (Unix ms)
//! payload: the encoded AMQP message as delivered
//! ```
//!
//! An event's offset is the position of its record in the partition's byte
//! stream (segment base + position in the segment), as Event Hubs offsets are.
//!
//! Recovery tells a torn tail from corruption: only the last segment may end
//! in an incomplete record (or in zeros, as some file systems leave after a
//! crash), and that tail is cut off. A record that fails its checksum with
//! more data after it is corruption: the emulator refuses to start rather
//! than drop acknowledged events.

use super::crc32::{crc32, Crc32};
use crate::error::{EmulatorError, Result};
use std::{
    fs::File,
    io::{BufReader, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

/// Bytes before a record's payload.
pub(crate) const HEADER_LEN: u64 = 28;

/// Largest payload a record may claim; anything larger is damage.
const MAX_PAYLOAD: u32 = 256 * 1024 * 1024;

/// Extension of segment files.
pub(crate) const SEGMENT_EXTENSION: &str = "seg";

/// Where one record is and what its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordMeta {
    pub sequence: i64,
    pub enqueued_ms: i64,
    /// Position of the record in its segment file.
    pub position: u64,
    /// Payload length.
    pub len: u32,
}

impl RecordMeta {
    /// Header plus payload.
    pub(crate) fn total_len(&self) -> u64 {
        HEADER_LEN + u64::from(self.len)
    }
}

/// Appends one record to `out`.
pub(crate) fn encode_record(out: &mut Vec<u8>, sequence: i64, enqueued_ms: i64, payload: &[u8]) {
    let len = (payload.len() as u32).to_be_bytes();
    let sequence = sequence.to_be_bytes();
    let enqueued = enqueued_ms.to_be_bytes();
    let crc = Crc32::new()
        .update(&sequence)
        .update(&enqueued)
        .update(payload)
        .finish();
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc32(&len).to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&sequence);
    out.extend_from_slice(&enqueued);
    out.extend_from_slice(payload);
}

/// File name of the segment starting at `base_offset` with `first_sequence`.
pub(crate) fn segment_path(dir: &Path, base_offset: i64, first_sequence: i64) -> PathBuf {
    dir.join(format!(
        "{base_offset:020}-{first_sequence:020}.{SEGMENT_EXTENSION}"
    ))
}

/// Segment files in `dir` as (base offset, first sequence, path), sorted.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(i64, i64, PathBuf)>> {
    let entries = std::fs::read_dir(dir).map_err(|source| EmulatorError::Storage {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut segments = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some(SEGMENT_EXTENSION) {
            continue;
        }
        let parsed = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.split_once('-'))
            .and_then(|(base, first)| {
                Some((base.parse::<i64>().ok()?, first.parse::<i64>().ok()?))
            });
        let Some((base, first)) = parsed else {
            return Err(EmulatorError::CorruptStore {
                path: path.clone(),
                message: "segment file name is not <offset>-<sequence>.seg".into(),
            });
        };
        segments.push((base, first, path));
    }
    segments.sort();
    Ok(segments)
}

/// How a segment scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScanOutcome {
    /// Bytes covered by complete, valid records.
    pub valid_len: u64,
    /// Bytes after them (a torn tail), 0 when the file ended cleanly.
    pub torn_bytes: u64,
}

fn storage_error(path: &Path) -> impl FnOnce(std::io::Error) -> EmulatorError + '_ {
    move |source| EmulatorError::Storage {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads as much as is there, up to `buf.len()`; returns the count.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Whether everything left in `reader` is zero bytes.
fn rest_is_zero(reader: &mut impl Read) -> std::io::Result<bool> {
    let mut chunk = [0u8; 8192];
    loop {
        let n = read_up_to(reader, &mut chunk)?;
        if n == 0 {
            return Ok(true);
        }
        if chunk[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
    }
}

/// Checks every record of a segment in order, streaming (one record in
/// memory at a time), and reports each to `on_record`. A torn tail is
/// accepted only when `is_last`; corruption is an error either way.
pub(crate) fn scan_segment(
    path: &Path,
    is_last: bool,
    mut on_record: impl FnMut(RecordMeta) -> Result<()>,
) -> Result<ScanOutcome> {
    let file = File::open(path).map_err(storage_error(path))?;
    let file_len = file.metadata().map_err(storage_error(path))?.len();
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let corrupt = |position: u64, what: &str| EmulatorError::CorruptStore {
        path: path.to_path_buf(),
        message: format!(
            "{what} in the record at byte {position}, with {} more bytes after it; refusing to \
             start rather than drop acknowledged events (move the file away to start empty)",
            file_len.saturating_sub(position)
        ),
    };
    let mut position = 0u64;
    let mut payload = Vec::new();
    loop {
        let torn = |position: u64| -> Result<ScanOutcome> {
            if is_last {
                Ok(ScanOutcome {
                    valid_len: position,
                    torn_bytes: file_len - position,
                })
            } else {
                Err(EmulatorError::CorruptStore {
                    path: path.to_path_buf(),
                    message: format!(
                        "incomplete record at byte {position} in a segment that is not the last"
                    ),
                })
            }
        };
        let mut header = [0u8; HEADER_LEN as usize];
        let got = read_up_to(&mut reader, &mut header).map_err(storage_error(path))?;
        if got == 0 {
            return Ok(ScanOutcome {
                valid_len: position,
                torn_bytes: 0,
            });
        }
        if got < header.len() {
            return torn(position);
        }
        let len_bytes = [header[0], header[1], header[2], header[3]];
        let len = u32::from_be_bytes(len_bytes);
        let len_check = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len_check != crc32(&len_bytes) || len > MAX_PAYLOAD {
            // A crash can leave zeros after (or instead of) the last write:
            // a bad header followed only by zeros is that write. Anything
            // else is damage.
            if is_last && rest_is_zero(&mut reader).map_err(storage_error(path))? {
                return torn(position);
            }
            return Err(corrupt(position, "damaged length"));
        }
        let crc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        let mut sequence = [0u8; 8];
        sequence.copy_from_slice(&header[12..20]);
        let mut enqueued = [0u8; 8];
        enqueued.copy_from_slice(&header[20..28]);
        payload.resize(len as usize, 0);
        let got = read_up_to(&mut reader, &mut payload).map_err(storage_error(path))?;
        if got < payload.len() {
            return torn(position);
        }
        let actual = Crc32::new()
            .update(&sequence)
            .update(&enqueued)
            .update(&payload)
            .finish();
        if actual != crc {
            // The last record of the log, possibly padded with zeros: the
            // write that was going on when the process died.
            if is_last && rest_is_zero(&mut reader).map_err(storage_error(path))? {
                return torn(position);
            }
            return Err(corrupt(position, "checksum mismatch"));
        }
        on_record(RecordMeta {
            sequence: i64::from_be_bytes(sequence),
            enqueued_ms: i64::from_be_bytes(enqueued),
            position,
            len,
        })?;
        position += HEADER_LEN + u64::from(len);
    }
}

/// Reads and verifies the payload of the record at `position`.
pub(crate) fn read_record(path: &Path, position: u64, len: u32) -> Result<Vec<u8>> {
    let mut file = File::open(path).map_err(storage_error(path))?;
    file.seek(SeekFrom::Start(position))
        .map_err(storage_error(path))?;
    let mut record = vec![0u8; (HEADER_LEN + u64::from(len)) as usize];
    file.read_exact(&mut record).map_err(storage_error(path))?;
    let crc = u32::from_be_bytes([record[8], record[9], record[10], record[11]]);
    if crc32(&record[12..]) != crc {
        return Err(EmulatorError::CorruptStore {
            path: path.to_path_buf(),
            message: format!("checksum mismatch reading the record at byte {position}"),
        });
    }
    record.drain(..HEADER_LEN as usize);
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_records(path: &Path, count: i64) -> Vec<u64> {
        let mut bytes = Vec::new();
        let mut positions = Vec::new();
        for sequence in 0..count {
            positions.push(bytes.len() as u64);
            encode_record(
                &mut bytes,
                sequence,
                1000 + sequence,
                &[sequence as u8; 100],
            );
        }
        std::fs::write(path, &bytes).unwrap();
        positions
    }

    fn scan(path: &Path, is_last: bool) -> Result<(ScanOutcome, Vec<i64>)> {
        let mut seen = Vec::new();
        let outcome = scan_segment(path, is_last, |meta| {
            seen.push(meta.sequence);
            Ok(())
        })?;
        Ok((outcome, seen))
    }

    #[test]
    fn clean_segment_and_record_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 0, 0);
        let positions = write_records(&path, 5);
        let (outcome, seen) = scan(&path, true).unwrap();
        assert_eq!(seen, [0, 1, 2, 3, 4]);
        assert_eq!(outcome.torn_bytes, 0);
        assert_eq!(read_record(&path, positions[3], 100).unwrap(), [3u8; 100]);
    }

    #[test]
    fn torn_tail_is_cut_only_in_the_last_segment() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 0, 0);
        write_records(&path, 3);
        let full = std::fs::metadata(&path).unwrap().len();
        let mut partial = Vec::new();
        encode_record(&mut partial, 3, 0, &[9u8; 100]);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(&partial[..50]).unwrap();
        drop(file);
        let (outcome, seen) = scan(&path, true).unwrap();
        assert_eq!(seen, [0, 1, 2]);
        assert_eq!((outcome.valid_len, outcome.torn_bytes), (full, 50));
        assert!(scan(&path, false).is_err());
        // Zeros after a crash are a torn tail too.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(full + 4096)
            .unwrap();
        let (outcome, _) = scan(&path, true).unwrap();
        assert_eq!(outcome.valid_len, full);
    }

    #[test]
    fn corruption_in_the_middle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 0, 0);
        let positions = write_records(&path, 5);
        let mut bytes = std::fs::read(&path).unwrap();
        // A flipped payload byte in record 1.
        bytes[positions[1] as usize + HEADER_LEN as usize + 10] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let error = scan(&path, true).unwrap_err().to_string();
        assert!(error.contains("checksum mismatch"), "{error}");
        // A damaged length in record 2 is not mistaken for a torn tail.
        bytes[positions[1] as usize + HEADER_LEN as usize + 10] ^= 0xff;
        bytes[positions[2] as usize] = 0x7f;
        std::fs::write(&path, &bytes).unwrap();
        let error = scan(&path, true).unwrap_err().to_string();
        assert!(error.contains("damaged length"), "{error}");
    }
}

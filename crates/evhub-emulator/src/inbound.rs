//! Checks on incoming bytes before `fe2o3-amqp` decodes them: frame size and
//! shape, nesting depth of performatives and messages, and how much of a
//! multi-frame (`more = true`) message a link may buffer.
//!
//! The checks run on raw bytes, iteratively, while the connection's stream is
//! read; a frame that fails is never handed to the decoder. The offending
//! connection is closed with an AMQP error; every other connection goes on.

use crate::depth::{self, DepthScanner, TooDeep};
use std::collections::HashMap;

const SMALL_ULONG: u8 = 0x53;
const ULONG: u8 = 0x80;
const TRANSFER: u8 = 0x14;

/// Most links of one connection with a message in transfer at once (the
/// session and link limits allow fewer; this bounds the bookkeeping even for
/// transfers on handles that were never attached).
const MAX_PARTIAL_MESSAGES: usize = 4096;

/// Limits applied to one connection's incoming frames.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InboundLimits {
    /// Largest frame (0 = unchecked).
    pub max_frame_size: usize,
    /// Most bytes one link may buffer for a message still being transferred
    /// (0 = unchecked).
    pub max_reassembly: u64,
    /// Most bytes all links of the connection may buffer together.
    pub max_connection_reassembly: u64,
    /// Deepest nesting of values in a performative or message.
    pub max_depth: usize,
}

impl InboundLimits {
    /// Only the nesting check (for tests of the writer).
    #[cfg(test)]
    pub(crate) fn unchecked() -> Self {
        Self {
            max_frame_size: 0,
            max_reassembly: 0,
            max_connection_reassembly: 0,
            max_depth: depth::MAX_NESTING_DEPTH,
        }
    }
}

/// Why incoming bytes ended the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Violation {
    /// A frame above max-frame-size.
    FrameTooLarge(usize),
    /// Not an AMQP frame.
    Malformed,
    /// Values nested deeper than allowed.
    TooDeep(usize),
    /// A multi-frame message grew past the link's limit.
    MessageTooLarge { limit: u64 },
    /// Too many links with a message in transfer at once.
    TooManyPartialMessages,
}

impl Violation {
    /// The AMQP error condition and description sent in the close frame.
    pub(crate) fn condition(&self, max_frame_size: usize) -> (&'static str, String) {
        match *self {
            Self::FrameTooLarge(size) => (
                "amqp:connection:framing-error",
                format!("frame of {size} bytes exceeds max-frame-size {max_frame_size}"),
            ),
            Self::Malformed => ("amqp:connection:framing-error", "malformed frame".into()),
            Self::TooDeep(limit) => (
                "amqp:decode-error",
                format!("values nested deeper than {limit} levels"),
            ),
            Self::MessageTooLarge { limit } => (
                "amqp:link:message-size-exceeded",
                format!("a message still being transferred exceeds {limit} bytes"),
            ),
            Self::TooManyPartialMessages => (
                "amqp:resource-limit-exceeded",
                format!("more than {MAX_PARTIAL_MESSAGES} messages in transfer at once"),
            ),
        }
    }
}

impl From<TooDeep> for Violation {
    fn from(error: TooDeep) -> Self {
        Self::TooDeep(error.limit)
    }
}

/// A message being received on one link, frame by frame.
#[derive(Debug)]
struct Partial {
    bytes: u64,
    scanner: DepthScanner,
}

/// Follows the frames of one connection's incoming byte stream.
#[derive(Debug)]
pub(crate) struct InboundGuard {
    limits: InboundLimits,
    /// The frame (or protocol header) being collected.
    frame: Vec<u8>,
    /// Incomplete messages by (channel, handle).
    partial: HashMap<(u16, u32), Partial>,
    /// Sum of `partial[..].bytes`.
    partial_bytes: u64,
}

/// A uint field (handle) as encoded in a performative.
fn uint_field(field: &[u8]) -> Option<u32> {
    match *field.first()? {
        0x43 => Some(0),
        0x52 => field.get(1).map(|b| u32::from(*b)),
        0x70 => Some(u32::from_be_bytes(field.get(1..5)?.try_into().ok()?)),
        _ => None,
    }
}

/// A boolean field; null or absent means false.
fn bool_field(field: Option<&&[u8]>) -> bool {
    matches!(field.copied(), Some([0x41, ..]) | Some([0x56, 0x01, ..]))
}

impl InboundGuard {
    pub(crate) fn new(limits: InboundLimits) -> Self {
        Self {
            limits,
            frame: Vec::new(),
            partial: HashMap::new(),
            partial_bytes: 0,
        }
    }

    pub(crate) fn limits(&self) -> InboundLimits {
        self.limits
    }

    /// Bytes the frame (or protocol header) being collected will have.
    fn wanted(&self) -> Result<usize, Violation> {
        if self.frame.len() < 8 || self.frame.starts_with(b"AMQP") {
            return Ok(8);
        }
        let size = u32::from_be_bytes([self.frame[0], self.frame[1], self.frame[2], self.frame[3]])
            as usize;
        if size < 8 {
            return Err(Violation::Malformed);
        }
        if self.limits.max_frame_size > 0 && size > self.limits.max_frame_size {
            return Err(Violation::FrameTooLarge(size));
        }
        Ok(size)
    }

    /// Follows frame boundaries; reports the first frame that breaks a limit.
    pub(crate) fn scan(&mut self, mut data: &[u8]) -> Result<(), Violation> {
        while !data.is_empty() {
            let wanted = self.wanted()?;
            let n = (wanted - self.frame.len()).min(data.len());
            self.frame.extend_from_slice(&data[..n]);
            data = &data[n..];
            // With 8 bytes a frame's size is known; it may be complete already.
            let wanted = self.wanted()?;
            if self.frame.len() < wanted {
                continue;
            }
            let frame = std::mem::take(&mut self.frame);
            if !frame.starts_with(b"AMQP") {
                self.inspect(&frame)?;
            }
        }
        Ok(())
    }

    fn inspect(&mut self, frame: &[u8]) -> Result<(), Violation> {
        let size = frame.len();
        if size < 8 {
            return Err(Violation::Malformed);
        }
        // Check the size header too: a frame shorter than it said is a bug here.
        let doff = usize::from(frame[4]) * 4;
        if doff < 8 || doff > size {
            return Err(Violation::Malformed);
        }
        let body = &frame[doff..];
        if body.is_empty() {
            return Ok(()); // heartbeat
        }
        // Performatives start with a described type: 0x00 then a ulong
        // descriptor. Anything else is not an AMQP frame body.
        if body.len() < 3 || body[0] != 0x00 || !matches!(body[1], SMALL_ULONG | ULONG) {
            return Err(Violation::Malformed);
        }
        let channel = u16::from_be_bytes([frame[6], frame[7]]);
        // The descriptor: small-ulong `0x53 code` or ulong `0x80` + 8 bytes.
        let (code, descriptor_end) = match body[1] {
            SMALL_ULONG => (u64::from(body[2]), 3),
            _ => {
                let bytes = body.get(2..10).ok_or(Violation::Malformed)?;
                let mut code = [0u8; 8];
                code.copy_from_slice(bytes);
                (u64::from_be_bytes(code), 10)
            }
        };
        let is_transfer = frame[5] == 0 && code == u64::from(TRANSFER);
        if !is_transfer {
            // No payload: the body is the performative alone.
            depth::check(body, self.limits.max_depth)?;
            return Ok(());
        }
        // The performative first: its own depth, then its fields (the field
        // walk below recurses only as deep as the depth check allowed).
        let performative = &body[descriptor_end..];
        let list_len = match performative.first() {
            Some(0x45) => 1,
            Some(0xc0) => 2 + usize::from(*performative.get(1).ok_or(Violation::Malformed)?),
            Some(0xd0) => {
                let size = performative.get(1..5).ok_or(Violation::Malformed)?;
                5 + u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize
            }
            _ => return Err(Violation::Malformed),
        };
        let list = performative.get(..list_len).ok_or(Violation::Malformed)?;
        depth::check(list, self.limits.max_depth)?;
        let Some((fields, _)) = crate::encoding::list_elements(list) else {
            return Err(Violation::Malformed);
        };
        let payload = &performative[list_len..];
        let handle = fields.first().and_then(|f| uint_field(f));
        let more = bool_field(fields.get(5));
        let aborted = bool_field(fields.get(8));
        let Some(handle) = handle else {
            // fe2o3 continues a multi-frame delivery without a handle on the
            // link of the previous frame; count those against channel 0xffff.
            return self.payload((channel, u32::MAX), payload, more, aborted);
        };
        self.payload((channel, handle), payload, more, aborted)
    }

    fn payload(
        &mut self,
        key: (u16, u32),
        payload: &[u8],
        more: bool,
        aborted: bool,
    ) -> Result<(), Violation> {
        let max_depth = self.limits.max_depth;
        if self.partial.len() >= MAX_PARTIAL_MESSAGES && !self.partial.contains_key(&key) {
            return Err(Violation::TooManyPartialMessages);
        }
        let partial = self.partial.entry(key).or_insert_with(|| Partial {
            bytes: 0,
            scanner: DepthScanner::for_message(max_depth),
        });
        partial.bytes += payload.len() as u64;
        self.partial_bytes += payload.len() as u64;
        let over_link =
            self.limits.max_reassembly > 0 && partial.bytes > self.limits.max_reassembly;
        let over_connection = self.limits.max_connection_reassembly > 0
            && self.partial_bytes > self.limits.max_connection_reassembly;
        if over_link || over_connection {
            return Err(Violation::MessageTooLarge {
                limit: if over_link {
                    self.limits.max_reassembly
                } else {
                    self.limits.max_connection_reassembly
                },
            });
        }
        let scanned = if aborted {
            Ok(())
        } else {
            partial.scanner.feed(payload)
        };
        if !more || aborted {
            if let Some(done) = self.partial.remove(&key) {
                self.partial_bytes -= done.bytes;
            }
        }
        scanned.map_err(Violation::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(channel: u16, body: &[u8]) -> Vec<u8> {
        let mut f = ((8 + body.len()) as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&[2, 0]);
        f.extend_from_slice(&channel.to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    /// transfer(handle, delivery-id 0, more) + payload
    fn transfer(handle: u8, more: bool, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![0x00, 0x53, 0x14, 0xc0, 0x08, 0x06, 0x52, handle, 0x43];
        body.extend_from_slice(&[0x40, 0x40, 0x40, if more { 0x41 } else { 0x42 }]);
        body.extend_from_slice(payload);
        frame(0, &body)
    }

    fn limits(max_reassembly: u64) -> InboundLimits {
        InboundLimits {
            max_frame_size: 1024,
            max_reassembly,
            max_connection_reassembly: max_reassembly * 2,
            max_depth: 8,
        }
    }

    #[test]
    fn endless_more_transfers_are_cut() {
        let mut guard = InboundGuard::new(limits(1000));
        let chunk = transfer(0, true, &[0x40; 300]);
        let mut result = Ok(());
        let mut frames = 0;
        while result.is_ok() && frames < 100 {
            result = guard.scan(&chunk);
            frames += 1;
        }
        assert_eq!(result, Err(Violation::MessageTooLarge { limit: 1000 }));
        assert_eq!(frames, 4);
    }

    #[test]
    fn completed_messages_reset_the_count_and_depth_spans_frames() {
        let mut guard = InboundGuard::new(limits(1000));
        for _ in 0..10 {
            guard.scan(&transfer(1, true, &[0x40; 300])).unwrap();
            guard.scan(&transfer(1, false, &[0x40; 300])).unwrap();
        }
        assert!(guard.partial.is_empty() && guard.partial_bytes == 0);
        // Nesting split over two frames of one message is still caught.
        let deep: Vec<u8> = std::iter::repeat_n([0x00, 0x53, 0x01], 9)
            .flatten()
            .collect();
        guard.scan(&transfer(2, true, &deep[..12])).unwrap();
        assert_eq!(
            guard.scan(&transfer(2, false, &deep[12..])),
            Err(Violation::TooDeep(8))
        );
    }

    #[test]
    fn transfers_with_a_long_descriptor_are_followed_too() {
        let mut guard = InboundGuard::new(limits(1000));
        let mut body = vec![0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x14];
        body.extend_from_slice(&[0xc0, 0x08, 0x06, 0x52, 0x00, 0x43, 0x40, 0x40, 0x40, 0x41]);
        body.extend_from_slice(&[0x40; 300]);
        let chunk = frame(0, &body);
        let mut result = Ok(());
        for _ in 0..10 {
            result = guard.scan(&chunk);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(Violation::MessageTooLarge { limit: 1000 }));
    }

    #[test]
    fn partial_messages_on_many_handles_are_bounded() {
        let mut guard = InboundGuard::new(limits(1_000_000));
        let mut result = Ok(());
        for handle in 0..=MAX_PARTIAL_MESSAGES as u32 {
            let mut body = vec![0x00, 0x53, 0x14, 0xc0, 0x0b, 0x06, 0x70];
            body.extend_from_slice(&handle.to_be_bytes());
            body.extend_from_slice(&[0x43, 0x40, 0x40, 0x40, 0x41, 0x40]);
            result = guard.scan(&frame(0, &body));
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(Violation::TooManyPartialMessages));
    }

    #[test]
    fn frames_split_anywhere_are_followed() {
        let mut stream = b"AMQP\x00\x01\x00\x00".to_vec();
        stream.extend(frame(0, &[0x00, 0x53, 0x10, 0x45]));
        stream.extend([0, 0, 0, 8, 2, 0, 0, 0]); // heartbeat
        stream.extend(transfer(0, false, b"\x00\x53\x77\x40"));
        let deep: Vec<u8> = std::iter::repeat_n([0x00, 0x53, 0x01], 20)
            .flatten()
            .collect();
        stream.extend(transfer(0, false, &deep));
        let mut guard = InboundGuard::new(limits(1000));
        let mut result = Ok(());
        for byte in &stream {
            result = guard.scan(std::slice::from_ref(byte));
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(Violation::TooDeep(8)));
        let mut guard = InboundGuard::new(limits(1000));
        assert_eq!(
            guard.scan(&frame(0, &[0xde, 0xad, 0xbe, 0xef])),
            Err(Violation::Malformed)
        );
        let mut guard = InboundGuard::new(limits(1000));
        assert_eq!(
            guard.scan(&[0, 0, 0x10, 0, 2, 0, 0, 0]),
            Err(Violation::FrameTooLarge(4096))
        );
    }
}

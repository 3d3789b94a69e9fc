//! A streaming check of the nesting depth of AMQP-encoded values.
//!
//! `serde_amqp` decodes recursively, one stack frame chain per nesting level,
//! so a deeply nested value can exhaust a thread's stack. This scanner walks
//! the type encoding (described types, lists, maps, arrays) iteratively over
//! raw bytes, before anything is decoded, and can be fed a message in pieces
//! as its transfer frames arrive.
//!
//! In a message, the body sections (data, amqp-sequence, amqp-value) are
//! opaque, as they are to Event Hubs: the emulator stores and forwards them
//! as bytes and never decodes them, so their nesting is followed (to find
//! where they end) but not limited. Header, annotations, properties and
//! footer, which the emulator does decode, are limited.

/// Deepest nesting accepted in a frame or message. Real performatives and
/// Event Hubs messages use fewer than ten levels.
pub(crate) const MAX_NESTING_DEPTH: usize = 64;

/// The input nests deeper than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooDeep {
    /// The limit that was exceeded.
    pub limit: usize,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// At the next constructor byte.
    Constructor,
    /// Collecting the size (and count) bytes that follow `code`.
    Header { code: u8, buf: [u8; 8], got: u8 },
    /// Skipping the data bytes of a primitive or an array.
    Skip(u64),
    /// Reading the small-ulong descriptor code of a message section.
    SectionCode,
    /// Reading the 8-byte ulong descriptor code of a message section.
    LongSectionCode { buf: [u8; 8], got: u8 },
    /// Stopped checking: the input is not valid AMQP (the decoder rejects it).
    Invalid,
}

/// Tracks the open compounds of a byte stream of AMQP values.
#[derive(Debug, Clone)]
pub(crate) struct DepthScanner {
    limit: usize,
    /// Values still expected by each open compound (a described type expects
    /// two: descriptor and value).
    open: Vec<u32>,
    step: Step,
    /// Whether the stream is a message (a sequence of sections).
    message: bool,
    /// Inside a body section: nesting is followed but not limited.
    in_body: bool,
}

/// Most open compounds followed inside an opaque body section: a bound on
/// this scanner's own memory (4 bytes each, 256 KiB), far beyond any real
/// body and beyond what crashes unpatched decoders.
const MAX_OPAQUE_NESTING: usize = 1 << 16;

fn header_len(code: u8) -> u8 {
    match code {
        0xa0..=0xaf | 0xe0..=0xef => 1,
        0xb0..=0xbf | 0xf0..=0xff => 4,
        0xc0..=0xcf => 2,
        _ => 8, // 0xd0..=0xdf
    }
}

impl DepthScanner {
    /// A scanner that rejects nesting deeper than `limit`.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Vec::new(),
            step: Step::Constructor,
            message: false,
            in_body: false,
        }
    }

    /// A scanner for a message: body sections are not limited.
    pub(crate) fn for_message(limit: usize) -> Self {
        Self {
            message: true,
            ..Self::new(limit)
        }
    }

    /// Whether the stream is at a value boundary with nothing open.
    #[cfg(test)]
    pub(crate) fn is_complete(&self) -> bool {
        self.open.is_empty() && matches!(self.step, Step::Constructor)
    }

    fn value_done(&mut self) {
        while let Some(remaining) = self.open.last_mut() {
            *remaining = remaining.saturating_sub(1);
            if *remaining > 0 {
                break;
            }
            self.open.pop();
        }
        if self.open.is_empty() {
            self.in_body = false;
        }
    }

    fn check_room(&self) -> Result<(), TooDeep> {
        let limit = if self.in_body {
            MAX_OPAQUE_NESTING
        } else {
            self.limit
        };
        if self.open.len() >= limit {
            return Err(TooDeep { limit });
        }
        Ok(())
    }

    fn open_compound(&mut self, values: u32) -> Result<(), TooDeep> {
        if values == 0 {
            self.value_done();
            return Ok(());
        }
        self.check_room()?;
        self.open.push(values);
        Ok(())
    }

    /// At a section's descriptor: the only open compound is the section's
    /// described type, still waiting for both of its values.
    fn at_section_descriptor(&self) -> bool {
        self.message && self.open.len() == 1 && self.open[0] == 2
    }

    fn skip(&mut self, bytes: u64) {
        if bytes == 0 {
            self.step = Step::Constructor;
            self.value_done();
        } else {
            self.step = Step::Skip(bytes);
        }
    }

    fn finish_header(&mut self, code: u8, buf: &[u8; 8]) -> Result<(), TooDeep> {
        let u32_at = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        self.step = Step::Constructor;
        match code {
            0xa0..=0xaf => self.skip(u64::from(buf[0])),
            0xb0..=0xbf => self.skip(u64::from(u32_at(0))),
            // list8/map8: size, count; list32/map32: size, count.
            0xc0..=0xcf => self.open_compound(u32::from(buf[1]))?,
            0xd0..=0xdf => self.open_compound(u32_at(4))?,
            // Arrays share one element constructor; their content is skipped
            // here (the patched decoder bounds it) but counts as one level.
            _ => {
                self.check_room()?;
                let size = if code < 0xf0 {
                    u64::from(buf[0])
                } else {
                    u64::from(u32_at(0))
                };
                self.skip(size);
            }
        }
        Ok(())
    }

    /// Scans the next piece of the stream.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<(), TooDeep> {
        while !data.is_empty() {
            match self.step {
                Step::Invalid => return Ok(()),
                Step::SectionCode => {
                    // data, amqp-sequence, amqp-value
                    self.in_body = matches!(data[0], 0x75..=0x77);
                    data = &data[1..];
                    self.step = Step::Constructor;
                    self.value_done();
                }
                Step::LongSectionCode { mut buf, mut got } => {
                    let n = usize::from(8 - got).min(data.len());
                    buf[usize::from(got)..usize::from(got) + n].copy_from_slice(&data[..n]);
                    got += n as u8;
                    data = &data[n..];
                    if got == 8 {
                        self.in_body = matches!(u64::from_be_bytes(buf), 0x75..=0x77);
                        self.step = Step::Constructor;
                        self.value_done();
                    } else {
                        self.step = Step::LongSectionCode { buf, got };
                    }
                }
                Step::Skip(left) => {
                    let n = left.min(data.len() as u64);
                    data = &data[n as usize..];
                    self.skip(left - n);
                }
                Step::Header {
                    code,
                    mut buf,
                    mut got,
                } => {
                    let need = header_len(code);
                    let n = usize::from(need - got).min(data.len());
                    buf[usize::from(got)..usize::from(got) + n].copy_from_slice(&data[..n]);
                    got += n as u8;
                    data = &data[n..];
                    if got == need {
                        self.finish_header(code, &buf)?;
                    } else {
                        self.step = Step::Header { code, buf, got };
                    }
                }
                Step::Constructor => {
                    let code = data[0];
                    data = &data[1..];
                    match code {
                        0x00 => self.open_compound(2)?,
                        0x40..=0x4f => self.value_done(),
                        0x53 if self.at_section_descriptor() => self.step = Step::SectionCode,
                        0x80 if self.at_section_descriptor() => {
                            self.step = Step::LongSectionCode {
                                buf: [0; 8],
                                got: 0,
                            }
                        }
                        0x50..=0x5f => self.skip(1),
                        0x60..=0x6f => self.skip(2),
                        0x70..=0x7f => self.skip(4),
                        0x80..=0x8f => self.skip(8),
                        0x90..=0x9f => self.skip(16),
                        0xa0..=0xff => {
                            self.step = Step::Header {
                                code,
                                buf: [0; 8],
                                got: 0,
                            }
                        }
                        _ => self.step = Step::Invalid,
                    }
                }
            }
        }
        Ok(())
    }
}

/// Checks one complete encoded value (or sequence of values).
pub(crate) fn check(data: &[u8], limit: usize) -> Result<(), TooDeep> {
    DepthScanner::new(limit).feed(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_described(levels: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for _ in 0..levels {
            bytes.extend_from_slice(&[0x00, 0x53, 0x01]);
        }
        bytes.push(0x40);
        bytes
    }

    fn nested_lists(levels: usize) -> Vec<u8> {
        let mut inner = vec![0x40];
        for _ in 0..levels {
            let mut outer = vec![0xd0];
            outer.extend_from_slice(&((inner.len() + 4) as u32).to_be_bytes());
            outer.extend_from_slice(&1u32.to_be_bytes());
            outer.extend_from_slice(&inner);
            inner = outer;
        }
        inner
    }

    #[test]
    fn limits_described_and_lists() {
        assert!(check(&nested_described(64), 64).is_ok());
        assert_eq!(check(&nested_described(65), 64), Err(TooDeep { limit: 64 }));
        assert!(check(&nested_described(3000), 64).is_err());
        assert!(check(&nested_lists(64), 64).is_ok());
        assert!(check(&nested_lists(65), 64).is_err());
    }

    #[test]
    fn message_bodies_are_opaque_but_annotations_are_limited() {
        let mut body = vec![0x00, 0x53, 0x77];
        body.extend(nested_described(3000));
        let mut annotations = vec![0x00, 0x53, 0x72];
        annotations.extend(nested_described(3));
        let mut deep_annotations = vec![0x00, 0x53, 0x72];
        deep_annotations.extend(nested_described(10));
        let mut footer = vec![0x00, 0x53, 0x78];
        footer.extend(nested_described(10));
        let mut message = annotations.clone();
        message.extend(&body);
        let mut scanner = DepthScanner::for_message(8);
        scanner.feed(&message).unwrap();
        assert!(scanner.is_complete());
        // After the body, the footer is limited again.
        assert!(scanner.feed(&footer).is_err());
        // The same body with a ulong (8-byte) section descriptor.
        let mut long_body = vec![0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x77];
        long_body.extend(nested_described(3000));
        let mut scanner = DepthScanner::for_message(8);
        scanner.feed(&long_body).unwrap();
        assert!(scanner.is_complete());
        // Annotations alone are limited; outside message mode, bodies too.
        assert!(DepthScanner::for_message(8)
            .feed(&deep_annotations)
            .is_err());
        assert!(DepthScanner::new(8).feed(&body).is_err());
    }

    #[test]
    fn siblings_do_not_add_up_and_pieces_match_whole() {
        // A list of 100 small described values: depth 2, not 101.
        let mut elements = Vec::new();
        for i in 0..100u8 {
            elements.extend_from_slice(&[0x00, 0x53, 0x70, 0xa1, 0x01, i]);
        }
        let mut list = vec![0xd0];
        list.extend_from_slice(&((elements.len() + 4) as u32).to_be_bytes());
        list.extend_from_slice(&100u32.to_be_bytes());
        list.extend_from_slice(&elements);
        let mut scanner = DepthScanner::new(3);
        scanner.feed(&list).unwrap();
        assert!(scanner.is_complete());
        // Fed one byte at a time, the deep value is still caught.
        let deep = nested_described(10);
        let mut scanner = DepthScanner::new(5);
        let result = deep.chunks(1).try_for_each(|b| scanner.feed(b));
        assert!(result.is_err());
        // Strings, maps, arrays and fixed widths are skipped by length.
        let mixed = [
            0xa1, 0x02, 0x00, 0x00, // str8 holding zero bytes (not described)
            0xc1, 0x03, 0x02, 0x43, 0x40, // map8 {0: null}
            0xe0, 0x03, 0x01, 0x00, 0x00, // array8 of opaque bytes
            0x81, 0, 0, 0, 0, 0, 0, 0, 0, // long
        ];
        let mut scanner = DepthScanner::new(2);
        scanner.feed(&mixed).unwrap();
        assert!(scanner.is_complete());
    }
}

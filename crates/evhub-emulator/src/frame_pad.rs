//! Pads outgoing performatives to their full field count.
//!
//! AMQP lets an encoder drop trailing null fields of a composite, and
//! `fe2o3-amqp` does. The Python SDK's `pyamqp` decoder indexes performative
//! fields by position (and finds a transfer's payload right after the last
//! *encoded* field), so short lists break it. The real service always sends
//! every field; this writer does the same by appending `null`s.

use crate::encoding::{list_elements, value_len};
use crate::inbound::{InboundGuard, InboundLimits};
use bytes::{Buf, BytesMut};
use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Above this many unsent bytes, writes wait for the socket.
const HIGH_WATER: usize = 256 * 1024;

const NULL: u8 = 0x40;
const LIST8: u8 = 0xc0;
const LIST32: u8 = 0xd0;
const SMALL_ULONG: u8 = 0x53;
const ULONG: u8 = 0x80;

/// Field count of each performative (AMQP frames) or SASL frame body.
fn field_count(frame_type: u8, code: u64) -> Option<usize> {
    match (frame_type, code) {
        (0, 0x10) => Some(10), // open
        (0, 0x11) => Some(8),  // begin
        (0, 0x12) => Some(14), // attach
        (0, 0x13) => Some(11), // flow
        (0, 0x14) => Some(11), // transfer
        (0, 0x15) => Some(6),  // disposition
        (0, 0x16) => Some(3),  // detach
        (0, 0x17) => Some(1),  // end
        (0, 0x18) => Some(1),  // close
        (1, 0x40) => Some(1),  // sasl-mechanisms
        (1, 0x44) => Some(2),  // sasl-outcome
        (1, 0x42) => Some(1),  // sasl-challenge
        _ => None,
    }
}

const FALSE: &[u8] = &[0x42];
const UINT_MAX: &[u8] = &[0x70, 0xff, 0xff, 0xff, 0xff];
const USHORT_MAX: &[u8] = &[0x60, 0xff, 0xff];

/// Spec defaults that `pyamqp` needs spelled out (it does not apply them).
fn default_value(frame_type: u8, code: u64, index: usize) -> Option<&'static [u8]> {
    if frame_type != 0 {
        return None;
    }
    match (code, index) {
        (0x10, 2) => Some(UINT_MAX),               // open.max-frame-size
        (0x10, 3) => Some(USHORT_MAX),             // open.channel-max
        (0x11, 4) => Some(UINT_MAX),               // begin.handle-max
        (0x12, 3) => Some(&[0x50, 0x02]),          // attach.snd-settle-mode = mixed
        (0x12, 4) => Some(&[0x50, 0x00]),          // attach.rcv-settle-mode = first
        (0x12, 8) => Some(FALSE),                  // attach.incomplete-unsettled
        (0x13, 8) | (0x13, 9) => Some(FALSE),      // flow.drain, flow.echo
        (0x14, 5) | (0x14, 8..=10) => Some(FALSE), // transfer.more/resume/aborted/batchable
        (0x15, 3) | (0x15, 5) => Some(FALSE),      // disposition.settled/batchable
        (0x16, 1) => Some(FALSE),                  // detach.closed
        _ => None,
    }
}

/// Field count of composites nested in performatives that `pyamqp` indexes:
/// error, received, rejected, modified, source, target.
fn nested_field_count(code: u8) -> Option<usize> {
    match code {
        0x1d => Some(3),
        0x23 => Some(2),
        0x25 => Some(1),
        0x27 => Some(3),
        0x28 => Some(11),
        0x29 => Some(7),
        _ => None,
    }
}

fn write_list(out: &mut Vec<u8>, fields: &[Vec<u8>]) {
    let element_len: usize = fields.iter().map(|f| f.len()).sum();
    if element_len < 255 {
        out.push(LIST8);
        out.push((element_len + 1) as u8);
        out.push(fields.len() as u8);
    } else {
        out.push(LIST32);
        out.extend_from_slice(&((element_len + 4) as u32).to_be_bytes());
        out.extend_from_slice(&(fields.len() as u32).to_be_bytes());
    }
    for field in fields {
        out.extend_from_slice(field);
    }
}

/// Copies one encoded value, completing nested composites on the way.
fn complete_value(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() > 3 && data[0] == 0x00 && data[1] == SMALL_ULONG {
        if let Some(expected) = nested_field_count(data[2]) {
            if let Some((fields, _)) = list_elements(&data[3..]) {
                let mut completed = fields
                    .iter()
                    .map(|f| complete_value(f))
                    .collect::<Option<Vec<_>>>()?;
                while completed.len() < expected {
                    completed.push(vec![NULL]);
                }
                let mut out = data[..3].to_vec();
                write_list(&mut out, &completed);
                return Some(out);
            }
        }
    }
    let len = value_len(data)?;
    Some(data[..len].to_vec())
}

/// Returns the frame with its performative list completed (all fields
/// present, spec defaults instead of nulls, nested errors, outcomes and
/// termini completed too), or `None` when nothing changes.
pub(crate) fn pad_frame(frame: &[u8]) -> Option<Vec<u8>> {
    if frame.len() < 8 {
        return None;
    }
    let doff = frame[4] as usize * 4;
    let frame_type = frame[5];
    let body = frame.get(doff..)?;
    if body.len() < 3 || body[0] != 0x00 {
        return None;
    }
    let (code, descriptor_len) = match body[1] {
        SMALL_ULONG => (u64::from(body[2]), 2),
        ULONG => {
            let bytes: [u8; 8] = body.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes), 9)
        }
        _ => return None,
    };
    let expected = field_count(frame_type, code)?;
    let list = body.get(1 + descriptor_len..)?;
    let (original, list_len) = list_elements(list)?;
    let rest = &list[list_len..];
    let mut fields = Vec::with_capacity(expected.max(original.len()));
    let mut changed = original.len() < expected;
    for field in &original {
        let completed = complete_value(field)?;
        changed |= completed.as_slice() != *field;
        fields.push(completed);
    }
    while fields.len() < expected {
        fields.push(vec![NULL]);
    }
    for (index, field) in fields.iter_mut().enumerate() {
        if field.as_slice() == [NULL] {
            if let Some(default) = default_value(frame_type, code, index) {
                *field = default.to_vec();
                changed = true;
            }
        }
    }
    if !changed {
        return None;
    }
    let mut out = Vec::with_capacity(frame.len() + 64);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&frame[4..doff]);
    out.extend_from_slice(&body[..1 + descriptor_len]);
    write_list(&mut out, &fields);
    out.extend_from_slice(rest);
    let size = out.len() as u32;
    out[0..4].copy_from_slice(&size.to_be_bytes());
    Some(out)
}

/// Wraps a connection's stream; reads pass through, writes are re-framed.
#[derive(Debug)]
pub(crate) struct PadFrames<Io> {
    inner: Io,
    /// Bytes written by the AMQP engine, not yet split into frames.
    pending: BytesMut,
    /// Bytes ready for the socket.
    out: BytesMut,
    /// Checks on incoming frames before the AMQP engine decodes them.
    inbound: InboundGuard,
}

impl<Io> PadFrames<Io> {
    #[cfg(test)]
    pub(crate) fn new(inner: Io) -> Self {
        Self::with_limits(inner, InboundLimits::unchecked())
    }

    /// Like `new`, and closes the connection (with an AMQP error in a close
    /// frame) when an incoming frame breaks one of `limits`.
    pub(crate) fn with_limits(inner: Io, limits: InboundLimits) -> Self {
        Self {
            inner,
            pending: BytesMut::new(),
            out: BytesMut::new(),
            inbound: InboundGuard::new(limits),
        }
    }
}

/// A close frame carrying an AMQP error.
pub(crate) fn close_frame(condition: &str, description: &str) -> Vec<u8> {
    let condition = condition.as_bytes();
    let description = &description.as_bytes()[..description.len().min(200)];
    let mut error = vec![0x00, 0x53, 0x1d];
    let mut fields = vec![0xa3, condition.len() as u8];
    fields.extend_from_slice(condition);
    fields.push(0xa1);
    fields.push(description.len() as u8);
    fields.extend_from_slice(description);
    fields.push(NULL);
    error.extend_from_slice(&[LIST8, (fields.len() + 1) as u8, 3]);
    error.extend_from_slice(&fields);
    let mut body = vec![0x00, 0x53, 0x18, LIST8, (error.len() + 1) as u8, 1];
    body.extend_from_slice(&error);
    let mut frame = ((8 + body.len()) as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&[2, 0, 0, 0]);
    frame.extend_from_slice(&body);
    frame
}

impl<Io> PadFrames<Io> {
    fn process(&mut self) {
        loop {
            if self.pending.starts_with(b"AMQP") {
                if self.pending.len() < 8 {
                    return;
                }
                let header = self.pending.split_to(8);
                self.out.extend_from_slice(&header);
                continue;
            }
            if self.pending.len() < 4 {
                return;
            }
            let size = u32::from_be_bytes([
                self.pending[0],
                self.pending[1],
                self.pending[2],
                self.pending[3],
            ]) as usize;
            if size < 8 {
                // Not a frame we understand; pass everything on unchanged.
                let rest = self.pending.split();
                self.out.extend_from_slice(&rest);
                return;
            }
            if self.pending.len() < size {
                return;
            }
            let frame = self.pending.split_to(size);
            match pad_frame(&frame) {
                Some(padded) => self.out.extend_from_slice(&padded),
                None => self.out.extend_from_slice(&frame),
            }
        }
    }
}

impl<Io: AsyncWrite + Unpin> PadFrames<Io> {
    /// Writes out as much as the socket takes; `Ready` once `out` is empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.out) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.out.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> AsyncRead for PadFrames<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let received = buf.filled()[before..].to_vec();
            if let Err(violation) = this.inbound.scan(&received) {
                let (condition, description) =
                    violation.condition(this.inbound.limits().max_frame_size);
                tracing::info!(
                    ?violation,
                    condition,
                    "bad incoming frame; closing the connection"
                );
                let close = close_frame(condition, &description);
                // Best effort: the socket's send buffer is normally empty here.
                let _ = Pin::new(&mut this.inner).poll_write(cx, &close);
                let _ = Pin::new(&mut this.inner).poll_flush(cx);
                buf.set_filled(before);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad incoming frame",
                )));
            }
        }
        result
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for PadFrames<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        if this.out.len() > HIGH_WATER {
            return Poll::Pending; // the socket's waker is registered by poll_drain
        }
        this.pending.extend_from_slice(buf);
        this.process();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.process();
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.process();
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = vec![0, 0, 0, 0, 2, 0, 0, 1];
        f.extend_from_slice(body);
        let size = f.len() as u32;
        f[0..4].copy_from_slice(&size.to_be_bytes());
        f
    }

    #[test]
    fn pads_short_transfer_and_keeps_payload() {
        // transfer with 2 fields (handle 0, delivery-id 1) and payload "xyz"
        let short = frame(&[
            0x00, 0x53, 0x14, 0xc0, 0x04, 0x02, 0x43, 0x52, 0x01, b'x', b'y', b'z',
        ]);
        let padded = pad_frame(&short).unwrap();
        let expected = frame(&[
            0x00, 0x53, 0x14, 0xc0, 13, 11, 0x43, 0x52, 0x01, 0x40, 0x40, 0x40, 0x42, 0x40, 0x40,
            0x42, 0x42, 0x42, b'x', b'y', b'z',
        ]);
        assert_eq!(padded, expected);
        assert!(pad_frame(&padded).is_none());
    }

    #[test]
    fn replaces_null_defaults_in_the_middle() {
        // begin: remote-channel 0, next-outgoing-id 0, windows 1, handle-max null
        let begin = frame(&[
            0x00, 0x53, 0x11, 0xc0, 0x0a, 0x05, 0x60, 0x00, 0x00, 0x43, 0x52, 0x01, 0x52, 0x01,
            0x40,
        ]);
        let padded = pad_frame(&begin).unwrap();
        let expected = frame(&[
            0x00, 0x53, 0x11, 0xc0, 17, 8, 0x60, 0x00, 0x00, 0x43, 0x52, 0x01, 0x52, 0x01, 0x70,
            0xff, 0xff, 0xff, 0xff, 0x40, 0x40, 0x40,
        ]);
        assert_eq!(padded, expected);
        // A described value inside the list (a source) is skipped correctly.
        let detach = frame(&[
            0x00, 0x53, 0x16, 0xc0, 0x09, 0x03, 0x43, 0x41, 0x00, 0x53, 0x1d, 0xc0, 0x01, 0x00,
        ]);
        let padded = pad_frame(&detach).unwrap();
        // The empty error list becomes condition, description, info.
        assert_eq!(
            padded,
            frame(&[
                0x00, 0x53, 0x16, 0xc0, 0x0c, 0x03, 0x43, 0x41, 0x00, 0x53, 0x1d, 0xc0, 0x04, 0x03,
                0x40, 0x40, 0x40
            ])
        );
        assert!(pad_frame(&padded).is_none());
    }

    #[test]
    fn completes_rejected_outcome_in_disposition() {
        // disposition: role receiver(true), first 0, last null, settled true,
        // state rejected{error{condition "x", description "y"}}
        let error = [
            0x00, 0x53, 0x1d, 0xc0, 0x07, 0x02, 0xa3, 0x01, b'x', 0xa1, 0x01, b'y',
        ];
        let mut rejected = vec![0x00, 0x53, 0x25, 0xc0, (error.len() + 1) as u8, 0x01];
        rejected.extend_from_slice(&error);
        let mut elements = vec![0x41, 0x43, 0x40, 0x41];
        elements.extend_from_slice(&rejected);
        let mut body = vec![0x00, 0x53, 0x15, 0xc0, (elements.len() + 1) as u8, 0x05];
        body.extend_from_slice(&elements);
        let padded = pad_frame(&frame(&body)).unwrap();
        let mut error_full = vec![
            0x00, 0x53, 0x1d, 0xc0, 0x08, 0x03, 0xa3, 0x01, b'x', 0xa1, 0x01, b'y', 0x40,
        ];
        let mut rejected_full = vec![0x00, 0x53, 0x25, 0xc0, (error_full.len() + 1) as u8, 0x01];
        rejected_full.append(&mut error_full);
        let mut elements_full = vec![0x41, 0x43, 0x40, 0x41];
        elements_full.append(&mut rejected_full);
        elements_full.push(0x42); // batchable default
        let mut expected = vec![
            0x00,
            0x53,
            0x15,
            0xc0,
            (elements_full.len() + 1) as u8,
            0x06,
        ];
        expected.extend_from_slice(&elements_full);
        assert_eq!(padded, frame(&expected));
    }

    #[test]
    fn pads_list0_and_ignores_unknown() {
        let close = frame(&[0x00, 0x53, 0x18, 0x45]);
        assert_eq!(
            pad_frame(&close).unwrap(),
            frame(&[0x00, 0x53, 0x18, 0xc0, 0x02, 0x01, 0x40])
        );
        let empty = vec![0, 0, 0, 8, 2, 0, 0, 0];
        assert!(pad_frame(&empty).is_none());
        assert!(pad_frame(&frame(&[0x00, 0x53, 0x77, 0x45])).is_none());
    }

    #[tokio::test]
    async fn stream_passes_headers_and_frames() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut writer = PadFrames::new(a);
        let close = frame(&[0x00, 0x53, 0x18, 0x45]);
        writer.write_all(b"AMQP\x00\x01\x00\x00").await.unwrap();
        writer.write_all(&close[..5]).await.unwrap();
        writer.write_all(&close[5..]).await.unwrap();
        writer.flush().await.unwrap();
        drop(writer);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        let mut want = b"AMQP\x00\x01\x00\x00".to_vec();
        want.extend(frame(&[0x00, 0x53, 0x18, 0xc0, 0x02, 0x01, 0x40]));
        assert_eq!(got, want);
    }
}

//! Raw AMQP 1.0 type encoding helpers shared by the inbound checks and the outbound frame
//! padding: value lengths and list elements, read without decoding (and without unbounded
//! recursion: the bytes come from the network).

const LIST0: u8 = 0x45;
const LIST8: u8 = 0xc0;
const LIST32: u8 = 0xd0;

/// Length of the AMQP-encoded value at the start of `data`.
pub(crate) fn value_len(data: &[u8]) -> Option<usize> {
    value_len_within(data, MAX_DESCRIPTOR_DEPTH)
}

/// Descriptors of descriptors deeper than this are refused (they come from the wire).
const MAX_DESCRIPTOR_DEPTH: usize = 64;

fn value_len_within(data: &[u8], depth: usize) -> Option<usize> {
    let constructor = *data.first()?;
    let sized = |width: usize| -> Option<usize> {
        let size = match width {
            1 => *data.get(1)? as usize,
            _ => u32::from_be_bytes(data.get(1..5)?.try_into().ok()?) as usize,
        };
        let total = 1 + width + size;
        (data.len() >= total).then_some(total)
    };
    let fixed = |width: usize| (data.len() > width).then_some(1 + width);
    match constructor {
        0x00 => {
            let depth = depth.checked_sub(1)?;
            let descriptor = value_len_within(&data[1..], depth)?;
            let value = value_len_within(&data[1 + descriptor..], depth)?;
            Some(1 + descriptor + value)
        }
        0x40..=0x4f => Some(1),
        0x50..=0x5f => fixed(1),
        0x60..=0x6f => fixed(2),
        0x70..=0x7f => fixed(4),
        0x80..=0x8f => fixed(8),
        0x90..=0x9f => fixed(16),
        0xa0..=0xaf | 0xc0..=0xcf | 0xe0..=0xef => sized(1),
        0xb0..=0xbf | 0xd0..=0xdf | 0xf0..=0xff => sized(4),
        _ => None,
    }
}

/// Splits an encoded list into its element slices; returns them and the
/// number of bytes the list occupies.
pub(crate) fn list_elements(list: &[u8]) -> Option<(Vec<&[u8]>, usize)> {
    let (count, mut elements, list_len) = match *list.first()? {
        LIST0 => (0usize, &list[0..0], 1usize),
        LIST8 => {
            let size = *list.get(1)? as usize;
            let count = *list.get(2)? as usize;
            (count, list.get(3..2 + size)?, 2 + size)
        }
        LIST32 => {
            let size = u32::from_be_bytes(list.get(1..5)?.try_into().ok()?) as usize;
            let count = u32::from_be_bytes(list.get(5..9)?.try_into().ok()?) as usize;
            (count, list.get(9..5 + size)?, 5 + size)
        }
        _ => return None,
    };
    // `count` comes from the wire: every element takes at least one byte.
    let mut fields = Vec::with_capacity(count.min(elements.len()));
    for _ in 0..count {
        let len = value_len(elements)?;
        fields.push(&elements[..len]);
        elements = &elements[len..];
    }
    Some((fields, list_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_chains_are_bounded() {
        // described(described(... ulong 0 ...)) far deeper than any real message
        let mut data = vec![0x00; 100_000];
        data.extend_from_slice(&[0x44, 0x44]);
        assert_eq!(value_len(&data), None);
        assert_eq!(value_len(&[0x00, 0x53, 0x10, 0x45]), Some(4));
    }

    #[test]
    fn list_elements_split() {
        // list8 of [ulong0, null]
        let list = [0xc0, 0x03, 0x02, 0x44, 0x40];
        let (fields, len) = list_elements(&list).unwrap();
        assert_eq!(fields, vec![&[0x44][..], &[0x40][..]]);
        assert_eq!(len, 5);
    }
}

//! Maps a partition key to a partition the way the Event Hubs service does.
//!
//! This is Bob Jenkins' lookup3 `hashlittle2` folded to 16 bits, the same
//! function the Azure SDKs use to predict the service's choice
//! (`azure_messaging_eventhubs` `PartitionResolver`, MIT licensed).

/// Index of the partition that `key` maps to among `partition_count` partitions.
pub(crate) fn partition_for_key(key: &str, partition_count: usize) -> usize {
    if partition_count == 0 {
        return 0;
    }
    let (hash1, hash2) = compute_hash(key.as_bytes(), 0, 0);
    let hash = (hash1 ^ hash2) as u16 as i16;
    ((hash as i32) % (partition_count as i32)).unsigned_abs() as usize
}

fn le32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(word)
}

fn compute_hash(data: &[u8], seed1: u32, seed2: u32) -> (u32, u32) {
    let len = data.len() as u32;
    let mut a = 0xDEAD_BEEF_u32.wrapping_add(len).wrapping_add(seed1);
    let mut b = a;
    let mut c = a.wrapping_add(seed2);

    let chunks = if data.len() > 12 {
        (data.len() - 1) / 12
    } else {
        0
    };
    let mut offset = 0usize;
    for _ in 0..chunks {
        a = a.wrapping_add(le32(&data[offset..]));
        b = b.wrapping_add(le32(&data[offset + 4..]));
        c = c.wrapping_add(le32(&data[offset + 8..]));
        offset += 12;
        a = a.wrapping_sub(c);
        a ^= c.rotate_left(4);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= a.rotate_left(6);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= b.rotate_left(8);
        b = b.wrapping_add(a);
        a = a.wrapping_sub(c);
        a ^= c.rotate_left(16);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= a.rotate_left(19);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= b.rotate_left(4);
        b = b.wrapping_add(a);
    }

    let tail = &data[offset..];
    let byte = |i: usize, shift: u32| (tail[i] as u32) << shift;
    match tail.len() {
        12 => {
            a = a.wrapping_add(le32(&tail[0..]));
            b = b.wrapping_add(le32(&tail[4..]));
            c = c.wrapping_add(le32(&tail[8..]));
        }
        left @ 9..=11 => {
            if left == 11 {
                c = c.wrapping_add(byte(10, 16));
            }
            if left >= 10 {
                c = c.wrapping_add(byte(9, 8));
            }
            c = c.wrapping_add(byte(8, 0));
            b = b.wrapping_add(le32(&tail[4..]));
            a = a.wrapping_add(le32(&tail[0..]));
        }
        8 => {
            b = b.wrapping_add(le32(&tail[4..]));
            a = a.wrapping_add(le32(&tail[0..]));
        }
        left @ 5..=7 => {
            if left == 7 {
                b = b.wrapping_add(byte(6, 16));
            }
            if left >= 6 {
                b = b.wrapping_add(byte(5, 8));
            }
            b = b.wrapping_add(byte(4, 0));
            a = a.wrapping_add(le32(&tail[0..]));
        }
        4 => {
            a = a.wrapping_add(le32(&tail[0..]));
        }
        left @ 1..=3 => {
            if left == 3 {
                a = a.wrapping_add(byte(2, 16));
            }
            if left >= 2 {
                a = a.wrapping_add(byte(1, 8));
            }
            a = a.wrapping_add(byte(0, 0));
        }
        _ => return (c, b),
    }

    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(24));
    (c, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_in_range() {
        for count in [1, 2, 4, 32] {
            for key in [
                "",
                "a",
                "key-1",
                "a much longer partition key than twelve bytes",
            ] {
                let p = partition_for_key(key, count);
                assert!(p < count);
                assert_eq!(p, partition_for_key(key, count));
            }
        }
    }

    #[test]
    fn keys_spread_over_partitions() {
        let mut seen = [false; 4];
        for i in 0..64 {
            seen[partition_for_key(&format!("key-{i}"), 4)] = true;
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
    }
}

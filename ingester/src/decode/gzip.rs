//! Gzip decompression of payloads, with a cap on the decompressed size against gzip bombs.

use std::io::Read;

use bytes::Bytes;
use flate2::read::MultiGzDecoder;

use super::DecodeError;

/// The two bytes a gzip stream starts with.
pub const MAGIC: [u8; 2] = [0x1F, 0x8B];

/// Default cap on the decompressed size of one payload: 64 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// Deflate cannot expand data more than about 1032 times; used to bound the initial buffer.
const MAX_DEFLATE_RATIO: usize = 1032;

/// Whether `data` starts like a gzip stream.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// Bytes the payloads of one Kinesis record may still decompress to, together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    cap: usize,
    left: usize,
}

impl Budget {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self { cap, left: cap }
    }

    /// Bytes left.
    pub fn left(&self) -> usize {
        self.left
    }
}

/// Decompresses a gzip stream (concatenated members are read in turn). Fails if it is not valid
/// gzip or if it decompresses to more than `max_bytes`.
pub fn decompress(data: &[u8], max_bytes: usize) -> Result<Bytes, DecodeError> {
    decompress_within(data, &mut Budget::new(max_bytes))
}

/// Like [`decompress`], with the cap taken from what is left of `budget`, and every byte
/// inflated charged to it, whether or not the stream turns out valid: the payloads of one
/// record together inflate at most the budget's cap (bounded work, not only bounded output).
pub fn decompress_within(data: &[u8], budget: &mut Budget) -> Result<Bytes, DecodeError> {
    let max_bytes = budget.left;
    let mut out = Vec::with_capacity(initial_capacity(data, max_bytes));
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let read = MultiGzDecoder::new(data).take(limit).read_to_end(&mut out);
    // On an error, `out` still holds what was inflated before it.
    budget.left = budget.left.saturating_sub(out.len());
    read.map_err(|e| DecodeError::Gzip(e.to_string()))?;
    if out.len() > max_bytes {
        return Err(DecodeError::GzipTooLarge {
            max_bytes: budget.cap,
        });
    }
    Ok(out.into())
}

/// The size the gzip trailer announces (ISIZE: the size modulo 2^32 of the last member), bounded
/// by the cap and by what deflate can possibly produce from `data`.
fn initial_capacity(data: &[u8], max_bytes: usize) -> usize {
    let announced = match data.last_chunk::<4>() {
        Some(isize) => u32::from_le_bytes(*isize) as usize,
        None => 0,
    };
    announced
        .min(max_bytes)
        .min(data.len().saturating_mul(MAX_DEFLATE_RATIO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::testing::gzip;

    #[test]
    fn decompresses_single_and_concatenated_members() {
        let text = b"hello, gzip".repeat(100);
        let out = decompress(&gzip(&text), 1 << 20).expect("valid gzip");
        assert_eq!(&out[..], &text[..]);

        let two = [gzip(b"one,").as_ref(), gzip(b"two").as_ref()].concat();
        assert!(is_gzip(&two));
        assert_eq!(
            &decompress(&two, 1 << 20).expect("two members")[..],
            b"one,two"
        );
    }

    #[test]
    fn corrupt_streams_are_gzip_errors() {
        let err = decompress(b"not gzip at all", 1 << 20).expect_err("not gzip");
        assert_eq!(err.category(), "gzip");
        assert!(err.to_string().starts_with("gzip: "), "{err}");

        let mut flipped = gzip(&b"some text to compress".repeat(20)).to_vec();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xFF;
        flipped.truncate(flipped.len() - 3);
        let err = decompress(&flipped, 1 << 20).expect_err("corrupt");
        assert_eq!(err.category(), "gzip");
    }

    #[test]
    fn output_over_the_cap_is_refused() {
        // 4 MiB of zeros compress to about 4 KiB.
        let bomb = gzip(&vec![0; 4 << 20]);
        assert!(bomb.len() < 64 << 10);
        let err = decompress(&bomb, 1 << 20).expect_err("over the cap");
        assert!(matches!(err, DecodeError::GzipTooLarge { max_bytes } if max_bytes == 1 << 20));
        assert!(err.to_string().contains("1048576"), "{err}");
        assert_eq!(
            decompress(&bomb, 4 << 20).expect("at the cap").len(),
            4 << 20
        );
    }

    #[test]
    fn a_budget_bounds_the_total_of_several_payloads() {
        let mut budget = Budget::new(10);
        let six = gzip(b"sixsix");
        assert_eq!(
            &decompress_within(&six, &mut budget).expect("6 of 10")[..],
            b"sixsix"
        );
        assert_eq!(budget.left(), 4);
        let err = decompress_within(&six, &mut budget).expect_err("6 more is over");
        assert_eq!(
            err,
            DecodeError::GzipTooLarge { max_bytes: 10 },
            "names the whole cap"
        );
        assert_eq!(budget.left(), 0, "the work done is charged");

        // A stream that inflates, then fails its CRC, is charged for what it inflated.
        let mut corrupt = gzip(&[b'a'; 1000]).to_vec();
        let crc = corrupt.len() - 8;
        corrupt[crc] ^= 0xFF;
        let mut budget = Budget::new(1 << 20);
        let err = decompress_within(&corrupt, &mut budget).expect_err("bad CRC");
        assert_eq!(err.category(), "gzip");
        assert_eq!(budget.left(), (1 << 20) - 1000);
    }
}

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

/// Decompresses a gzip stream (concatenated members are read in turn). Fails if it is not valid
/// gzip or if it decompresses to more than `max_bytes`.
pub fn decompress(data: &[u8], max_bytes: usize) -> Result<Bytes, DecodeError> {
    let mut out = Vec::with_capacity(initial_capacity(data, max_bytes));
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    MultiGzDecoder::new(data)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Gzip(e.to_string()))?;
    if out.len() > max_bytes {
        return Err(DecodeError::GzipTooLarge { max_bytes });
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
}

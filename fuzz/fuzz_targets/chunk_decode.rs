//! Fuzz target for the chunk file decoder (`tsdb::decode_chunk`): arbitrary
//! bytes must decode or fail with an error, never panic, and never allocate
//! without bound. Decoded raw series must be strictly ascending in time.
//!
//! Every block of a chunk carries a crc32, so random bytes almost never get
//! past the checksums. Each input is therefore decoded twice: as it is, and
//! sealed into a well-formed file (see `seal`): header, the input's parts
//! as blocks with correct checksums, the last part as the index, a footer
//! pointing at it. The fuzzer then explores the index and column decoders.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb::{decode_chunk, DecodedSeries};

/// Separates blocks in the input of the sealed form.
const SEP: &[u8] = b"#BLK";

/// `[flags][part SEP part SEP ... index]` -> a chunk file whose checksums,
/// header and footer are right. Flags: bit 0 = kind (raw/rollup), bit 1 =
/// version 1 instead of 2. Blocks start at offset 16, back to back.
fn seal(data: &[u8]) -> Option<Vec<u8>> {
    let (&flags, rest) = data.split_first()?;
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut from = 0;
    let mut i = 0;
    while i + SEP.len() <= rest.len() {
        if &rest[i..i + SEP.len()] == SEP {
            parts.push(&rest[from..i]);
            i += SEP.len();
            from = i;
        } else {
            i += 1;
        }
    }
    parts.push(&rest[from..]);
    let index = parts.pop()?;
    let mut out = Vec::with_capacity(data.len() + 64);
    out.extend_from_slice(b"MWTSCHNK");
    let version: u32 = if flags & 2 != 0 { 1 } else { 2 };
    out.extend_from_slice(&version.to_le_bytes());
    out.push(flags & 1);
    out.extend_from_slice(&[0, 0, 0]);
    for p in parts {
        out.extend_from_slice(p);
        out.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
    }
    let index_offset = out.len() as u64;
    out.extend_from_slice(index);
    out.extend_from_slice(&crc32fast::hash(index).to_le_bytes());
    out.extend_from_slice(&index_offset.to_le_bytes());
    out.extend_from_slice(&(index.len() as u64).to_le_bytes());
    out.extend_from_slice(b"MWTSEND\0");
    Some(out)
}

fn check(bytes: &[u8]) {
    if let Ok(chunk) = decode_chunk(bytes) {
        for s in &chunk.series {
            if let DecodedSeries::Raw(_, points) = s {
                assert!(points.windows(2).all(|w| w[0].ts < w[1].ts));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(sealed) = seal(data) {
        check(&sealed);
    }
});

//! Fuzz target for the chunk file decoder (`tsdb::decode_chunk`): arbitrary
//! bytes must decode or fail with an error, never panic, and never allocate
//! without bound. Decoded raw series must be strictly ascending in time.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb::{decode_chunk, DecodedSeries};

fuzz_target!(|data: &[u8]| {
    if let Ok(chunk) = decode_chunk(data) {
        for s in &chunk.series {
            if let DecodedSeries::Raw(_, points) = s {
                assert!(points.windows(2).all(|w| w[0].ts < w[1].ts));
            }
        }
    }
});

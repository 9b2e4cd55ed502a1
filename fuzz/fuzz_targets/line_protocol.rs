//! Fuzz target for the InfluxDB line protocol parser
//! (`tsdb::parse_line_protocol`): arbitrary text in every timestamp
//! precision must parse or fail with a line-numbered error, never panic,
//! and every accepted point must carry a valid series key.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb::{parse_line_protocol, Error, LineProtocolOptions, Precision};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count();
    for precision in [
        Precision::Nanoseconds,
        Precision::Microseconds,
        Precision::Milliseconds,
        Precision::Seconds,
    ] {
        let opts = LineProtocolOptions {
            precision,
            ..LineProtocolOptions::default()
        };
        match parse_line_protocol(text, &opts, 0) {
            Ok(points) => {
                for p in &points {
                    p.series.validate().expect("accepted points have valid keys");
                }
            }
            Err(Error::LineProtocol { line, .. }) => assert!(line >= 1 && line <= lines),
            Err(other) => panic!("unexpected error kind: {other}"),
        }
    }
});

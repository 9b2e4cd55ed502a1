//! Hostile input never panics: the stable-toolchain counterpart of the
//! `line_protocol` and `chunk_decode` fuzz targets.

use std::sync::Arc;

use proptest::prelude::*;
use tsdb::{
    decode_chunk, parse_device_json, parse_line_protocol, Error, LineProtocolOptions, Options,
    SeriesKey, Tsdb, Value, WritePoint,
};

fn sample_chunk() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    let mut batch = Vec::new();
    for (i, m) in ["a", "b", "c"].iter().enumerate() {
        let key = Arc::new(SeriesKey::new("ns", "dev", m).with_labels([("k", "v")]));
        for t in 0..200 {
            let value = match i {
                0 => Value::F64(t as f64 / 8.0),
                1 => Value::I64(t * 3),
                _ => Value::Str(Arc::from(if t % 3 == 0 { "on" } else { "off" })),
            };
            if i != 1 || t % 40 != 7 {
                batch.push(WritePoint {
                    series: key.clone(),
                    ts: t * 1000,
                    value,
                });
            }
        }
    }
    db.write(&batch).unwrap();
    db.flush(0).unwrap();
    let mut raw: Vec<_> = std::fs::read_dir(dir.path().join("chunks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    raw.sort();
    std::fs::read(&raw[0]).unwrap()
}

#[test]
fn sample_chunk_decodes() {
    let c = decode_chunk(&sample_chunk()).unwrap();
    assert_eq!(c.namespace, "ns");
    assert_eq!(c.series.len(), 3);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn line_protocol_never_panics(text in "[a-z0-9,= \"\\\\.#\n\r-]{0,120}") {
        match parse_line_protocol(&text, &LineProtocolOptions::default(), 0) {
            Ok(points) => for p in points { p.series.validate().unwrap(); },
            Err(Error::LineProtocol { line, .. }) => prop_assert!(line >= 1),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    #[test]
    fn json_never_panics(text in "[\\[\\]{}\":,a-z0-9. -]{0,80}") {
        let _ = parse_device_json(text.as_bytes(), "ns", "dev", 0);
    }

    #[test]
    fn mutated_chunks_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), cut in any::<prop::sample::Index>()) {
        let mut bytes = sample_chunk();
        for (i, x) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= x | 1;
        }
        let _ = decode_chunk(&bytes);
        let n = cut.index(bytes.len());
        let _ = decode_chunk(&bytes[..n]);
    }
}

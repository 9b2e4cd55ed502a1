//! Fuzz target for the MQTT codec: arbitrary bytes are decoded as a stream
//! of packets for MQTT 3.1, 3.1.1 and 5.0. Decoding must never panic, and
//! every packet it accepts must re-encode (to exactly `encoded_len` bytes)
//! into bytes that decode to the same packet.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqtt_proto::{decode, encode, encoded_len, Protocol};

/// Large enough never to refuse what a fuzz input can hold.
const MAX_PACKET_SIZE: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    for protocol in [Protocol::V31, Protocol::V311, Protocol::V5] {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(packet)) = decode(&mut buf, protocol, MAX_PACKET_SIZE) {
            let mut out = BytesMut::new();
            encode(&packet, protocol, &mut out).expect("a decoded packet must re-encode");
            assert_eq!(out.len(), encoded_len(&packet, protocol));
            let again = decode(&mut out, protocol, usize::MAX)
                .expect("a re-encoded packet must decode")
                .expect("a re-encoded packet is complete");
            assert_eq!(again, packet);
            assert!(out.is_empty(), "re-encoded packet left trailing bytes");
        }
    }
});

//! Live streams over a real server: matching messages arrive, others do
//! not, a subscriber that falls behind is dropped, and dropping the
//! subscription removes its taps.

use std::sync::Arc;

use broker::{AccessControl, BrokerConfig, StoredMessage};
use broker_net::{NetConfig, Server, ServerOptions};
use bytes::Bytes;
use mqtt_proto::QoS;

fn msg(topic: &str, payload: &'static [u8]) -> StoredMessage {
    StoredMessage {
        topic: topic.into(),
        payload: Bytes::from_static(payload),
        qos: QoS::AtMostOnce,
        retain: false,
        payload_format_indicator: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: Vec::new(),
        expires_at: None,
    }
}

#[tokio::test]
async fn streams_filter_bound_and_unsubscribe() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(kv::RedbSessionStore::open(&dir.path().join("b.redb")).unwrap());
    let config = NetConfig {
        bind: "127.0.0.1".into(),
        port: 0,
        ws_port: None,
        sys_interval_secs: 0,
        ..Default::default()
    };
    let options = ServerOptions {
        access: AccessControl::new(true),
        ..Default::default()
    };
    let server = Server::bind(config, BrokerConfig::default(), store, options)
        .await
        .unwrap();
    let handle = server.handle();

    let mut events = handle.subscribe_stream(vec!["$events/devices/#".into()], 16);
    let mut slow = handle.subscribe_stream(vec!["plant/#".into()], 2);
    handle.publish(msg("$events/devices/d1/connected", b"{}"));
    handle.publish(msg("other/topic", b"x"));
    for _ in 0..5 {
        handle.publish(msg("plant/line1", b"y"));
    }
    let (topic, payload) = events.rx.recv().await.unwrap();
    assert_eq!(topic, "$events/devices/d1/connected");
    assert_eq!(&payload[..], b"{}");
    assert!(events.rx.try_recv().is_err(), "only matching messages");
    // The slow subscriber got two, then was dropped: its stream ends.
    assert!(slow.rx.recv().await.is_some());
    assert!(slow.rx.recv().await.is_some());
    assert!(slow.rx.recv().await.is_none());
    assert_eq!(
        handle
            .metrics()
            .streams_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    drop(events);
    // No subscriber left: nothing is tapped any more (no panic, no leak).
    handle.publish(msg("$events/devices/d1/disconnected", b"{}"));
}

//! The redb store keeps what the broker persisted, across reopen.

use std::sync::Arc;

use broker::{DeliveryState, PersistOp, StoredMessage, StoredSubscription, Time};
use bytes::Bytes;
use kv::{RedbSessionStore, SessionStore};
use mqtt_proto::{QoS, SubscriptionOptions};

fn msg(topic: &str, payload: &'static [u8]) -> Arc<StoredMessage> {
    Arc::new(StoredMessage {
        topic: topic.into(),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        payload_format_indicator: Some(true),
        content_type: Some("text/plain".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01")),
        user_properties: vec![("k".into(), "v".into())],
        expires_at: Some(Time(123)),
    })
}

#[test]
fn sessions_messages_and_retained_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.redb");
    {
        let store = RedbSessionStore::open(&path).unwrap();
        store
            .apply(&[
                PersistOp::SessionPut {
                    client_id: "c1".into(),
                    protocol_level: 5,
                    expiry_interval: 60,
                    expires_at: None,
                    subscriptions: vec![StoredSubscription {
                        filter: "a/#".into(),
                        options: SubscriptionOptions {
                            qos: QoS::ExactlyOnce,
                            no_local: true,
                            ..Default::default()
                        },
                        subscription_id: Some(9),
                    }],
                    owner: Some("g:dev-1".into()),
                },
                PersistOp::MessageAdd {
                    client_id: "c1".into(),
                    seq: 1,
                    message: msg("a/1", b"one"),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    subscription_ids: vec![9],
                },
                PersistOp::MessageAdd {
                    client_id: "c1".into(),
                    seq: 2,
                    message: msg("a/2", b"two"),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    subscription_ids: vec![],
                },
                PersistOp::MessageState {
                    client_id: "c1".into(),
                    seq: 2,
                    state: DeliveryState::Sent(77),
                },
                PersistOp::MessageRemove {
                    client_id: "c1".into(),
                    seq: 1,
                },
                PersistOp::IncomingAdd {
                    client_id: "c1".into(),
                    packet_id: 5,
                },
                PersistOp::RetainPut {
                    message: msg("r/1", b"kept"),
                },
                PersistOp::RetainPut {
                    message: msg("r/2", b"dropped"),
                },
                PersistOp::RetainDelete {
                    topic: "r/2".into(),
                },
                PersistOp::SessionPut {
                    client_id: "gone".into(),
                    protocol_level: 4,
                    expiry_interval: 5,
                    expires_at: Some(Time(1)),
                    subscriptions: vec![],
                    owner: None,
                },
                PersistOp::MessageAdd {
                    client_id: "gone".into(),
                    seq: 1,
                    message: msg("x", b"x"),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    subscription_ids: vec![],
                },
                PersistOp::SessionDelete {
                    client_id: "gone".into(),
                },
            ])
            .unwrap();
    }
    let store = RedbSessionStore::open(&path).unwrap();
    let state = store.load().unwrap();
    assert_eq!(state.sessions.len(), 1);
    let s = &state.sessions[0];
    assert_eq!(&*s.client_id, "c1");
    assert_eq!(s.expiry_interval, 60);
    assert_eq!(s.subscriptions[0].subscription_id, Some(9));
    assert_eq!(s.owner.as_deref(), Some("g:dev-1"));
    assert!(s.subscriptions[0].options.no_local);
    assert_eq!(s.messages.len(), 1);
    assert_eq!(s.messages[0].seq, 2);
    assert_eq!(s.messages[0].state, DeliveryState::Sent(77));
    assert_eq!(s.messages[0].message, msg("a/2", b"two"));
    assert_eq!(s.incoming_qos2, vec![5]);
    assert_eq!(state.retained.len(), 1);
    assert_eq!(&state.retained[0].payload[..], b"kept");
}

#[test]
fn message_added_and_completed_in_one_batch_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbSessionStore::open(&dir.path().join("b.redb")).unwrap();
    let add = |seq| PersistOp::MessageAdd {
        client_id: "c".into(),
        seq,
        message: msg("t", b"p"),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: vec![],
    };
    let state = |seq, st| PersistOp::MessageState {
        client_id: "c".into(),
        seq,
        state: st,
    };
    let remove = |seq| PersistOp::MessageRemove {
        client_id: "c".into(),
        seq,
    };
    store
        .apply(&[
            PersistOp::SessionPut {
                client_id: "c".into(),
                protocol_level: 5,
                expiry_interval: 60,
                expires_at: None,
                subscriptions: vec![],
                owner: None,
            },
            add(1),
            state(1, DeliveryState::Sent(1)),
            remove(1),
            add(2),
            state(2, DeliveryState::Sent(2)),
            add(3),
        ])
        .unwrap();
    // A later batch completes message 2 (added in an earlier batch).
    store
        .apply(&[state(3, DeliveryState::Sent(3)), remove(2)])
        .unwrap();
    let s = &store.load().unwrap().sessions[0];
    let got: Vec<_> = s.messages.iter().map(|m| (m.seq, m.state)).collect();
    assert_eq!(got, vec![(3, DeliveryState::Sent(3))]);
}

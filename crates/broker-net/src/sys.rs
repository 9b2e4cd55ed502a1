//! `$SYS/broker/...` statistics, published as retained messages.

use broker::{Broker, StoredMessage, Time};
use bytes::Bytes;
use mqtt_proto::QoS;

use crate::figures::{Snapshot, FIGURES};
use crate::server::NetMetrics;

/// Publishes the current statistics: the version, the uptime, and every
/// figure of [`crate::figures::FIGURES`] that has a `$SYS` topic.
pub(crate) fn publish(broker: &mut Broker, metrics: &NetMetrics, now: Time) {
    let snap = Snapshot::read(broker, metrics, now);
    let fixed = [
        (
            "$SYS/broker/version",
            format!("millwright {}", env!("CARGO_PKG_VERSION")),
        ),
        ("$SYS/broker/uptime", format!("{} seconds", snap.uptime_s)),
    ];
    let values = FIGURES
        .iter()
        .filter_map(|f| f.sys.map(|topic| (topic, (f.read)(&snap).to_string())));
    for (topic, value) in fixed.into_iter().chain(values) {
        broker.publish_internal(
            StoredMessage {
                topic: topic.into(),
                payload: Bytes::from(value),
                qos: QoS::AtMostOnce,
                retain: true,
                payload_format_indicator: Some(true),
                content_type: None,
                response_topic: None,
                correlation_data: None,
                user_properties: Vec::new(),
                expires_at: None,
            },
            now,
        );
    }
}

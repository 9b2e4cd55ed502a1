//! What the simulation tests share: a broker driven with a virtual clock,
//! packets to feed it, and readers of what it answered.

#![allow(dead_code)] // each test file uses its own part

use std::sync::Arc;

use bytes::Bytes;
use mqtt_proto::{
    ConnAck, Connect, ConnectProperties, Packet, Protocol, Publish, QoS, ReasonCode, Subscribe,
    SubscribeProperties, Subscription, SubscriptionOptions,
};

use broker::{
    AccessControl, Broker, BrokerConfig, ConnId, ConnectInfo, Grant, GrantRule, Output, Time,
};

pub const T0: Time = Time(1_700_000_000_000);

/// Who connects, and how.
#[derive(Clone, Default)]
pub struct Who {
    pub v5: bool,
    pub clean: bool,
    /// Session expiry (v5) when not clean.
    pub expiry: u32,
    pub username: Option<String>,
    pub grant: Option<Arc<Grant>>,
}

impl Who {
    /// An anonymous client.
    pub fn anonymous(v5: bool) -> Who {
        Who {
            v5,
            clean: true,
            ..Who::default()
        }
    }

    /// A password-file user (authenticated by the core's files).
    pub fn user(name: &str, v5: bool) -> Who {
        Who {
            username: Some(name.into()),
            ..Who::anonymous(v5)
        }
    }

    /// A registered device, confined to its own tree plus `extra` filters.
    pub fn device(id: &str, v5: bool, extra: &[&str]) -> Who {
        Who {
            username: Some(id.into()),
            grant: Some(device_grant(id, extra)),
            ..Who::anonymous(v5)
        }
    }

    /// The same with a session that outlives the connection.
    pub fn persistent(mut self) -> Who {
        self.clean = false;
        self.expiry = 3600;
        self
    }
}

/// A device's grant: read and write on `devices/{id}/#` and `extra`.
pub fn device_grant(id: &str, extra: &[&str]) -> Arc<Grant> {
    let own = format!("devices/{id}/#");
    Arc::new(Grant {
        principal: id.into(),
        rules: std::iter::once(own.as_str())
            .chain(extra.iter().copied())
            .map(|f| GrantRule {
                filter: f.into(),
                read: true,
                write: true,
            })
            .collect(),
        limits: Default::default(),
    })
}

pub struct Sim {
    pub b: Broker,
    pub now: Time,
}

impl Sim {
    pub fn new(config: BrokerConfig) -> Sim {
        Sim::with_access(config, AccessControl::new(true))
    }

    pub fn with_access(config: BrokerConfig, access: AccessControl) -> Sim {
        Sim {
            b: Broker::new(config, access, T0),
            now: T0,
        }
    }

    pub fn connect(&mut self, conn: u64, client_id: &str, who: &Who) -> Vec<Output> {
        let c = Connect {
            protocol: if who.v5 { Protocol::V5 } else { Protocol::V311 },
            clean_start: who.clean,
            keep_alive: 0,
            client_id: client_id.into(),
            will: None,
            username: who.username.as_deref().map(Into::into),
            password: None,
            properties: ConnectProperties {
                session_expiry_interval: (who.v5 && who.expiry > 0).then_some(who.expiry),
                ..Default::default()
            },
        };
        let info = ConnectInfo {
            peer: "127.0.0.1:1".into(),
            grant: who.grant.clone(),
        };
        self.b.connect(ConnId(conn), c, &info, self.now);
        self.b.drain_outputs().collect()
    }

    pub fn handle(&mut self, conn: u64, p: Packet) -> Vec<Output> {
        self.b.handle(ConnId(conn), p, self.now);
        self.b.drain_outputs().collect()
    }

    pub fn subscribe(&mut self, conn: u64, filter: &str) -> Vec<Output> {
        self.handle(conn, subscribe_packet(filter, QoS::AtLeastOnce))
    }

    /// QoS 1 PUBLISH of `payload` with `packet_id`.
    pub fn publish(
        &mut self,
        conn: u64,
        topic: &str,
        packet_id: u16,
        payload: &[u8],
    ) -> Vec<Output> {
        self.handle(
            conn,
            Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                topic: topic.into(),
                packet_id,
                payload: Bytes::copy_from_slice(payload),
                ..Default::default()
            }),
        )
    }

    pub fn advance(&mut self, ms: u64) -> Vec<Output> {
        self.now = self.now.plus_ms(ms);
        self.b.tick(self.now);
        self.b.drain_outputs().collect()
    }
}

pub fn subscribe_packet(filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: SubscribeProperties::default(),
        subscriptions: vec![Subscription {
            filter: filter.into(),
            options: SubscriptionOptions {
                qos,
                ..Default::default()
            },
        }],
    })
}

pub fn sent_to(out: &[Output], conn: u64) -> Vec<&Packet> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send {
                conn: c, packet, ..
            } if *c == ConnId(conn) => Some(packet),
            _ => None,
        })
        .collect()
}

pub fn pubacks(out: &[Output], conn: u64) -> Vec<(u16, ReasonCode)> {
    sent_to(out, conn)
        .into_iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) => Some((a.packet_id, a.reason_code)),
            _ => None,
        })
        .collect()
}

pub fn publish_ids(out: &[Output], conn: u64) -> Vec<u16> {
    sent_to(out, conn)
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.packet_id),
            _ => None,
        })
        .collect()
}

pub fn suback_codes(out: &[Output], conn: u64) -> Vec<ReasonCode> {
    sent_to(out, conn)
        .into_iter()
        .find_map(|p| match p {
            Packet::SubAck(s) => Some(s.reason_codes.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

pub fn connack(out: &[Output], conn: u64) -> &ConnAck {
    sent_to(out, conn)
        .into_iter()
        .find_map(|p| match p {
            Packet::ConnAck(c) => Some(c),
            _ => None,
        })
        .expect("no CONNACK")
}

pub fn closed(out: &[Output], conn: u64) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Close { conn: c } if *c == ConnId(conn)))
}

//! A session: what the broker keeps for a client id across connections.

use std::collections::VecDeque;

use crate::fast::{HashMap, HashSet};
use std::sync::Arc;

use mqtt_proto::{ByteString, LastWill, Protocol, QoS};

use crate::persist::{DeliveryState, StoredMessage, StoredSubscription};
use crate::{ConnId, Time};

/// A message on its way to one session.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub seq: u64,
    pub message: Arc<StoredMessage>,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
}

/// A QoS 1/2 delivery sent and not yet completed.
#[derive(Debug, Clone)]
pub(crate) struct Inflight {
    pub delivery: Delivery,
    pub packet_id: u16,
    /// `Sent` or `Released`.
    pub state: DeliveryState,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub client_id: ByteString,
    pub protocol: Protocol,
    /// Seconds the session outlives its connection; 0 = ends with it.
    pub expiry_interval: u32,
    /// Full filter (with any `$share/g/` prefix) -> subscription.
    pub subscriptions: HashMap<ByteString, StoredSubscription>,
    pub conn: Option<ConnId>,
    /// Bumped on every (re)connection; stale timers compare it.
    pub generation: u64,
    pub queue: VecDeque<Delivery>,
    pub queued_bytes: usize,
    pub inflight: VecDeque<Inflight>,
    pub next_packet_id: u16,
    /// Incoming QoS 2 packet ids with PUBREC sent, awaiting PUBREL.
    pub incoming_qos2: HashSet<u16>,
    /// When a disconnected session ends.
    pub expires_at: Option<Time>,
    /// The will of the current (or just closed) connection, and when it is
    /// due once the connection is gone.
    pub will: Option<Box<LastWill>>,
    pub will_due: Option<Time>,
    /// The client's Receive Maximum (how many QoS 1/2 it takes in flight).
    pub client_receive_maximum: u16,
    /// The client's Maximum Packet Size.
    pub client_max_packet_size: u32,
    /// Username of the current connection, for ACL checks on delivery.
    pub username: Option<ByteString>,
    /// Rules of the current (or last) connection when it was authenticated
    /// outside the core; they replace the ACL file for this session.
    pub grant: Option<Arc<crate::auth::Grant>>,
    /// Messages dropped for this session because its queue was full.
    pub dropped: u64,
    /// Who the client id belongs to (see [`owner_key`]); `None` only for a
    /// session restored from a store written before owners were kept (the
    /// next principal to connect claims it).
    pub owner: Option<ByteString>,
    /// Publishers paused until this session's queue drains.
    pub waiters: Vec<ConnId>,
    /// Since when the queue is over its soft limit.
    pub over_since: Option<Time>,
}

/// The principal a connection speaks for, as a session owner key: a device
/// or claim authenticated by the network layer (`g:<principal>`), a
/// password-file user (`u:<name>`), or an anonymous client (`anon`). A
/// client id belongs to one owner: another owner cannot resume, take over
/// or clean its session.
pub(crate) fn owner_key(grant: Option<&crate::auth::Grant>, username: Option<&str>) -> ByteString {
    match (grant, username) {
        (Some(g), _) => ByteString::from(format!("g:{}", g.principal)),
        (None, Some(u)) => ByteString::from(format!("u:{u}")),
        (None, None) => ByteString::from_static("anon"),
    }
}

impl Session {
    pub fn new(client_id: ByteString, protocol: Protocol) -> Session {
        Session {
            client_id,
            protocol,
            expiry_interval: 0,
            subscriptions: HashMap::default(),
            conn: None,
            generation: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            inflight: VecDeque::new(),
            next_packet_id: 1,
            incoming_qos2: HashSet::default(),
            expires_at: None,
            will: None,
            will_due: None,
            client_receive_maximum: u16::MAX,
            client_max_packet_size: u32::MAX,
            username: None,
            grant: None,
            dropped: 0,
            owner: None,
            waiters: Vec::new(),
            over_since: None,
        }
    }

    /// Whether its state must survive a restart.
    pub fn persistent(&self) -> bool {
        self.expiry_interval > 0
    }

    /// A packet id not used by any in-flight delivery.
    pub fn alloc_packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.inflight.iter().any(|i| i.packet_id == id) {
                return id;
            }
        }
    }

    pub fn subscriptions_vec(&self) -> Vec<StoredSubscription> {
        let mut v: Vec<_> = self.subscriptions.values().cloned().collect();
        v.sort_by(|a, b| a.filter.cmp(&b.filter));
        v
    }
}

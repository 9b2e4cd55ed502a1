//! Byte layout of stored values. Version 1 (sessions: version 2):
//!
//! - session: `[2u8] protocol_level:u8 expiry:u32 has_expires_at:u8
//!   [expires_at:u64] n_subs:u32 { filter:str options:u8 has_id:u8 [id:u32] }*
//!   owner:opt<str>`; version 1 is the same without `owner` (still read:
//!   such a session has no owner until a principal connects to it)
//! - message (queued for a session): `[1u8] qos:u8 retain:u8 state:u8
//!   [packet_id:u16] n_ids:u32 {id:u32}* message`
//! - retained: `[1u8] message`
//! - message: `topic:str payload:bytes qos:u8 retain:u8 pfi:opt<u8>
//!   content_type:opt<str> response_topic:opt<str> correlation:opt<bytes>
//!   n_user:u32 {name:str value:str}* expires_at:opt<u64>`
//!
//! Integers are little-endian; `str`/`bytes` are a u32 length then bytes;
//! `opt<T>` is a 0/1 byte then T when 1.

use std::sync::Arc;

use broker::{DeliveryState, StoredMessage, StoredSubscription, Time};
use bytes::Bytes;
use mqtt_proto::{ByteString, QoS, RetainHandling, SubscriptionOptions};

pub(crate) const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt stored value: {0}")]
pub struct Corrupt(pub &'static str);

#[derive(Default)]
pub(crate) struct Writer(pub Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn opt<T>(&mut self, v: &Option<T>, f: impl FnOnce(&mut Self, &T)) {
        match v {
            Some(x) => {
                self.u8(1);
                f(self, x);
            }
            None => self.u8(0),
        }
    }
}

pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.0.len() < n {
            return Err(Corrupt("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Corrupt> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, Corrupt> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Corrupt> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<Bytes, Corrupt> {
        let n = self.u32()? as usize;
        Ok(Bytes::copy_from_slice(self.take(n)?))
    }
    fn str(&mut self) -> Result<ByteString, Corrupt> {
        ByteString::try_from(self.bytes()?).map_err(|_| Corrupt("invalid UTF-8"))
    }
    fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, Corrupt>,
    ) -> Result<Option<T>, Corrupt> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            _ => Err(Corrupt("bad option tag")),
        }
    }
    fn version(&mut self) -> Result<(), Corrupt> {
        match self.u8()? {
            VERSION => Ok(()),
            _ => Err(Corrupt("unknown value version")),
        }
    }
}

fn qos(v: u8) -> Result<QoS, Corrupt> {
    QoS::from_u8(v).ok_or(Corrupt("bad QoS"))
}

fn put_message(w: &mut Writer, m: &StoredMessage) {
    w.bytes(m.topic.as_bytes());
    w.bytes(&m.payload);
    w.u8(m.qos as u8);
    w.u8(m.retain as u8);
    w.opt(&m.payload_format_indicator, |w, v| w.u8(*v as u8));
    w.opt(&m.content_type, |w, v| w.bytes(v.as_bytes()));
    w.opt(&m.response_topic, |w, v| w.bytes(v.as_bytes()));
    w.opt(&m.correlation_data, |w, v| w.bytes(v));
    w.u32(m.user_properties.len() as u32);
    for (k, v) in &m.user_properties {
        w.bytes(k.as_bytes());
        w.bytes(v.as_bytes());
    }
    w.opt(&m.expires_at, |w, v| w.u64(v.0));
}

fn get_message(r: &mut Reader<'_>) -> Result<StoredMessage, Corrupt> {
    let topic = r.str()?;
    let payload = r.bytes()?;
    let q = qos(r.u8()?)?;
    let retain = r.u8()? != 0;
    let payload_format_indicator = r.opt(|r| Ok(r.u8()? != 0))?;
    let content_type = r.opt(|r| r.str())?;
    let response_topic = r.opt(|r| r.str())?;
    let correlation_data = r.opt(|r| r.bytes())?;
    let n = r.u32()? as usize;
    let mut user_properties = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        user_properties.push((r.str()?, r.str()?));
    }
    let expires_at = r.opt(|r| r.u64().map(Time))?;
    Ok(StoredMessage {
        topic,
        payload,
        qos: q,
        retain,
        payload_format_indicator,
        content_type,
        response_topic,
        correlation_data,
        user_properties,
        expires_at,
    })
}

pub(crate) fn encode_retained(m: &StoredMessage) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(VERSION);
    put_message(&mut w, m);
    w.0
}

pub(crate) fn decode_retained(b: &[u8]) -> Result<StoredMessage, Corrupt> {
    let mut r = Reader(b);
    r.version()?;
    get_message(&mut r)
}

/// Session metadata as stored.
pub(crate) struct SessionMeta {
    pub protocol_level: u8,
    pub expiry_interval: u32,
    pub expires_at: Option<Time>,
    pub subscriptions: Vec<StoredSubscription>,
    pub owner: Option<ByteString>,
}

/// Version of session records (2 added the owner).
const SESSION_VERSION: u8 = 2;

fn options_byte(o: &SubscriptionOptions) -> u8 {
    (o.qos as u8)
        | (u8::from(o.no_local) << 2)
        | (u8::from(o.retain_as_published) << 3)
        | ((o.retain_handling as u8) << 4)
}

fn options_from(b: u8) -> Result<SubscriptionOptions, Corrupt> {
    Ok(SubscriptionOptions {
        qos: qos(b & 3)?,
        no_local: b & 4 != 0,
        retain_as_published: b & 8 != 0,
        retain_handling: match (b >> 4) & 3 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(Corrupt("bad retain handling")),
        },
    })
}

pub(crate) fn encode_session(s: &SessionMeta) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(SESSION_VERSION);
    w.u8(s.protocol_level);
    w.u32(s.expiry_interval);
    w.opt(&s.expires_at, |w, t| w.u64(t.0));
    w.u32(s.subscriptions.len() as u32);
    for sub in &s.subscriptions {
        w.bytes(sub.filter.as_bytes());
        w.u8(options_byte(&sub.options));
        w.opt(&sub.subscription_id, |w, v| w.u32(*v));
    }
    w.opt(&s.owner, |w, o| w.bytes(o.as_bytes()));
    w.0
}

pub(crate) fn decode_session(b: &[u8]) -> Result<SessionMeta, Corrupt> {
    let mut r = Reader(b);
    let version = r.u8()?;
    if version != VERSION && version != SESSION_VERSION {
        return Err(Corrupt("unknown session version"));
    }
    let protocol_level = r.u8()?;
    let expiry_interval = r.u32()?;
    let expires_at = r.opt(|r| r.u64().map(Time))?;
    let n = r.u32()? as usize;
    let mut subscriptions = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        subscriptions.push(StoredSubscription {
            filter: r.str()?,
            options: options_from(r.u8()?)?,
            subscription_id: r.opt(|r| r.u32())?,
        });
    }
    let owner = if version >= 2 {
        r.opt(|r| r.str())?
    } else {
        None
    };
    Ok(SessionMeta {
        protocol_level,
        expiry_interval,
        expires_at,
        subscriptions,
        owner,
    })
}

/// A queued message record.
pub(crate) struct QueuedRecord {
    pub qos: QoS,
    pub retain: bool,
    pub state: DeliveryState,
    pub subscription_ids: Vec<u32>,
    pub message: Arc<StoredMessage>,
}

fn put_state(w: &mut Writer, st: DeliveryState) {
    match st {
        DeliveryState::Queued => w.u8(0),
        DeliveryState::Sent(p) => {
            w.u8(1);
            w.u16(p);
        }
        DeliveryState::Released(p) => {
            w.u8(2);
            w.u16(p);
        }
    }
}

pub(crate) fn encode_queued(q: &QueuedRecord) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(VERSION);
    w.u8(q.qos as u8);
    w.u8(q.retain as u8);
    put_state(&mut w, q.state);
    w.u32(q.subscription_ids.len() as u32);
    for id in &q.subscription_ids {
        w.u32(*id);
    }
    put_message(&mut w, &q.message);
    w.0
}

pub(crate) fn decode_queued(b: &[u8]) -> Result<QueuedRecord, Corrupt> {
    let mut r = Reader(b);
    r.version()?;
    let q = qos(r.u8()?)?;
    let retain = r.u8()? != 0;
    let state = match r.u8()? {
        0 => DeliveryState::Queued,
        1 => DeliveryState::Sent(r.u16()?),
        2 => DeliveryState::Released(r.u16()?),
        _ => return Err(Corrupt("bad delivery state")),
    };
    let n = r.u32()? as usize;
    let mut subscription_ids = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        subscription_ids.push(r.u32()?);
    }
    let message = Arc::new(get_message(&mut r)?);
    Ok(QueuedRecord {
        qos: q,
        retain,
        state,
        subscription_ids,
        message,
    })
}

/// Rewrites only the state of an encoded queued record (no full decode).
pub(crate) fn set_queued_state(b: &[u8], st: DeliveryState) -> Result<Vec<u8>, Corrupt> {
    let mut r = Reader(b);
    r.version()?;
    let _ = r.u8()?;
    let _ = r.u8()?;
    let old_len = match r.u8()? {
        0 => 1,
        1 | 2 => 3,
        _ => return Err(Corrupt("bad delivery state")),
    };
    let mut w = Writer(b[..3].to_vec());
    put_state(&mut w, st);
    let rest = b.get(3 + old_len..).ok_or(Corrupt("truncated"))?;
    w.0.extend_from_slice(rest);
    Ok(w.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_of_version_1_still_decode_without_an_owner() {
        let meta = SessionMeta {
            protocol_level: 5,
            expiry_interval: 60,
            expires_at: Some(Time(7)),
            subscriptions: vec![],
            owner: Some("g:d1".into()),
        };
        let v2 = encode_session(&meta);
        assert_eq!(v2[0], SESSION_VERSION);
        assert_eq!(decode_session(&v2).unwrap().owner.as_deref(), Some("g:d1"));
        // A version 1 record: the same bytes without the owner.
        let mut w = Writer::default();
        w.u8(1);
        w.u8(5);
        w.u32(60);
        w.opt(&Some(Time(7)), |w, t| w.u64(t.0));
        w.u32(0);
        let old = decode_session(&w.0).unwrap();
        assert_eq!(old.owner, None);
        assert_eq!(old.expires_at, Some(Time(7)));
        assert!(decode_session(&[9]).is_err());
    }
}

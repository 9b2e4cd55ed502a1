//! The store trait and its embedded `redb` implementation.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use broker::{PersistOp, RestoredMessage, RestoredSession, RestoredState};

use crate::codec::{self, Corrupt, QueuedRecord, SessionMeta};
use crate::{Db, Order, Read, Schema, Table};

const SESSIONS: Table<&str, &[u8]> = Table::new("sessions");
const MESSAGES: Table<(&str, u64), &[u8]> = Table::new("session_messages");
const INCOMING: Table<(&str, u16), ()> = Table::new("session_incoming_qos2");
const RETAINED: Table<&str, &[u8]> = Table::new("retained");

/// The schema version this binary writes; it opens any version up to it.
const SCHEMA_VERSION: u64 = 1;
const SCHEMA: Schema = Schema::new(
    "session",
    SCHEMA_VERSION,
    &[&SESSIONS, &MESSAGES, &INCOMING, &RETAINED],
);

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The store layer failed (I/O, a newer schema version, ...).
    #[error(transparent)]
    Store(#[from] crate::Error),
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// Where the broker's durable state lives. The embedded implementation is
/// [`RedbSessionStore`]; a scale-out backend is another implementation.
pub trait SessionStore: Send + Sync {
    /// Everything stored, for [`broker::Broker::restore`].
    fn load(&self) -> Result<RestoredState, KvError>;
    /// Applies `ops` in order, atomically and durably (returns after fsync).
    fn apply(&self, ops: &[PersistOp]) -> Result<(), KvError>;
}

/// The embedded store: one redb file.
pub struct RedbSessionStore {
    db: Db,
}

impl RedbSessionStore {
    /// Opens or creates the store file at `path`.
    pub fn open(path: &Path) -> Result<RedbSessionStore, KvError> {
        Ok(RedbSessionStore {
            db: Db::open(path, SCHEMA, &[])?,
        })
    }
}

impl SessionStore for RedbSessionStore {
    fn load(&self) -> Result<RestoredState, KvError> {
        self.db.read(|txn| {
            let sessions_t = txn.open(&SESSIONS)?;
            let messages_t = txn.open(&MESSAGES)?;
            let incoming_t = txn.open(&INCOMING)?;
            let retained_t = txn.open(&RETAINED)?;
            let mut state = RestoredState::default();
            sessions_t.scan::<&str, KvError>(.., Order::Ascending, |k, v| {
                let client_id = k.value();
                let meta = match codec::decode_session(v.value()) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!(client_id, error = %e, "skipping unreadable stored session");
                        return Ok(true);
                    }
                };
                let mut messages = Vec::new();
                messages_t.scan(
                    (client_id, 0)..=(client_id, u64::MAX),
                    Order::Ascending,
                    |k, v| {
                        let seq = k.value().1;
                        match codec::decode_queued(v.value()) {
                            Ok(q) => messages.push(RestoredMessage {
                                seq,
                                message: q.message,
                                qos: q.qos,
                                retain: q.retain,
                                subscription_ids: q.subscription_ids,
                                state: q.state,
                            }),
                            Err(e) => {
                                tracing::error!(client_id, seq, error = %e, "skipping unreadable queued message")
                            }
                        }
                        Ok::<_, KvError>(true)
                    },
                )?;
                let incoming_qos2 =
                    incoming_t.keys((client_id, 0)..=(client_id, u16::MAX), |k| k.1)?;
                state.sessions.push(RestoredSession {
                    client_id: client_id.into(),
                    protocol_level: meta.protocol_level,
                    expiry_interval: meta.expiry_interval,
                    expires_at: meta.expires_at,
                    subscriptions: meta.subscriptions,
                    owner: meta.owner,
                    messages,
                    incoming_qos2,
                });
                Ok(true)
            })?;
            retained_t.scan::<&str, KvError>(.., Order::Ascending, |k, v| {
                match codec::decode_retained(v.value()) {
                    Ok(m) => state.retained.push(Arc::new(m)),
                    Err(e) => {
                        tracing::error!(topic = k.value(), error = %e, "skipping unreadable retained message")
                    }
                }
                Ok(true)
            })?;
            Ok(state)
        })
    }

    fn apply(&self, ops: &[PersistOp]) -> Result<(), KvError> {
        if ops.is_empty() {
            return Ok(());
        }
        let coalesced = coalesce(ops);
        self.db.write(|txn| {
            let mut sessions = txn.table(&SESSIONS)?;
            let mut messages = txn.table(&MESSAGES)?;
            let mut incoming = txn.table(&INCOMING)?;
            let mut retained = txn.table(&RETAINED)?;
            for op in ops {
                match op {
                    PersistOp::SessionPut {
                        client_id,
                        protocol_level,
                        expiry_interval,
                        expires_at,
                        subscriptions,
                        owner,
                    } => {
                        let meta = SessionMeta {
                            protocol_level: *protocol_level,
                            expiry_interval: *expiry_interval,
                            expires_at: *expires_at,
                            subscriptions: subscriptions.clone(),
                            owner: owner.clone(),
                        };
                        sessions.insert(&**client_id, codec::encode_session(&meta).as_slice())?;
                    }
                    PersistOp::SessionDelete { client_id } => {
                        let id: &str = client_id;
                        sessions.remove(id)?;
                        for seq in messages.keys((id, 0)..=(id, u64::MAX), |k| k.1)? {
                            messages.remove((id, seq))?;
                        }
                        for pid in incoming.keys((id, 0)..=(id, u16::MAX), |k| k.1)? {
                            incoming.remove((id, pid))?;
                        }
                    }
                    PersistOp::MessageAdd {
                        client_id,
                        seq,
                        message,
                        qos,
                        retain,
                        subscription_ids,
                    } => {
                        let state = match coalesced.get(&(&**client_id, *seq)) {
                            Some(Fate::Completed) => continue,
                            Some(Fate::State(st)) => *st,
                            None => broker::DeliveryState::Queued,
                        };
                        let rec = QueuedRecord {
                            qos: *qos,
                            retain: *retain,
                            state,
                            subscription_ids: subscription_ids.clone(),
                            message: message.clone(),
                        };
                        messages
                            .insert((&**client_id, *seq), codec::encode_queued(&rec).as_slice())?;
                    }
                    PersistOp::MessageState {
                        client_id,
                        seq,
                        state,
                    } => {
                        let key = (&**client_id, *seq);
                        if coalesced.contains_key(&key) {
                            continue;
                        }
                        let updated = match messages.get(key)? {
                            Some(v) => Some(codec::set_queued_state(v.value(), *state)?),
                            None => None,
                        };
                        if let Some(bytes) = updated {
                            messages.insert(key, bytes.as_slice())?;
                        }
                    }
                    PersistOp::MessageRemove { client_id, seq } => {
                        if coalesced.contains_key(&(&**client_id, *seq)) {
                            continue;
                        }
                        messages.remove((&**client_id, *seq))?;
                    }
                    PersistOp::IncomingAdd {
                        client_id,
                        packet_id,
                    } => {
                        incoming.insert((&**client_id, *packet_id), ())?;
                    }
                    PersistOp::IncomingRemove {
                        client_id,
                        packet_id,
                    } => {
                        incoming.remove((&**client_id, *packet_id))?;
                    }
                    PersistOp::RetainPut { message } => {
                        retained
                            .insert(&*message.topic, codec::encode_retained(message).as_slice())?;
                    }
                    PersistOp::RetainDelete { topic } => {
                        retained.remove(&**topic)?;
                    }
                }
            }
            Ok(())
        })
    }
}

/// What becomes of a message added within a batch.
enum Fate {
    /// Added and removed in the same batch: nothing to write at all.
    Completed,
    /// Added; written once with its last state in the batch.
    State(broker::DeliveryState),
}

/// Group commit's second win: a message queued, sent and acknowledged within
/// one batch (the common case for an online persistent subscriber) never
/// touches the file. Sequence numbers are unique across sessions and
/// restarts, so a (client id, seq) key names one message only.
fn coalesce(ops: &[PersistOp]) -> HashMap<(&str, u64), Fate> {
    let mut fates: HashMap<(&str, u64), Fate> = HashMap::new();
    for op in ops {
        match op {
            PersistOp::MessageAdd { client_id, seq, .. } => {
                fates.insert(
                    (&**client_id, *seq),
                    Fate::State(broker::DeliveryState::Queued),
                );
            }
            PersistOp::MessageState {
                client_id,
                seq,
                state,
            } => {
                if let Some(f) = fates.get_mut(&(&**client_id, *seq)) {
                    *f = Fate::State(*state);
                }
            }
            PersistOp::MessageRemove { client_id, seq } => {
                if let Some(f) = fates.get_mut(&(&**client_id, *seq)) {
                    *f = Fate::Completed;
                }
            }
            _ => {}
        }
    }
    fates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::write_raw;
    use bytes::Bytes;
    use mqtt_proto::QoS;

    /// A file written the way the code before `Db` did (raw redb: `meta`
    /// with `schema_version`, the four tables, values from `codec.rs`)
    /// loads; a newer one is refused.
    #[test]
    fn a_file_written_before_db_opens() {
        let retained = broker::StoredMessage {
            topic: "r/1".into(),
            payload: Bytes::from_static(b"kept"),
            qos: QoS::AtLeastOnce,
            retain: true,
            payload_format_indicator: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: vec![],
            expires_at: None,
        };
        let session = SessionMeta {
            protocol_level: 5,
            expiry_interval: 60,
            expires_at: None,
            subscriptions: vec![],
            owner: Some("dev".into()),
        };
        let session = codec::encode_session(&session);
        let retained = codec::encode_retained(&retained);
        let write = |path: &Path, version: u64| {
            write_raw(path, |tx| {
                tx.insert::<&str, u64>("meta", "schema_version", version)
                    .insert::<&str, &[u8]>("sessions", "c1", session.as_slice())
                    .insert::<(&str, u16), ()>("session_incoming_qos2", ("c1", 7), ())
                    .insert::<&str, &[u8]>("retained", "r/1", retained.as_slice());
            })
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.redb");
        write(&path, 1);
        let state = RedbSessionStore::open(&path).unwrap().load().unwrap();
        assert_eq!(state.sessions.len(), 1);
        let s = &state.sessions[0];
        assert_eq!((&*s.client_id, s.owner.as_deref()), ("c1", Some("dev")));
        assert_eq!(s.incoming_qos2, [7]);
        assert_eq!(state.retained.len(), 1);
        assert_eq!(&*state.retained[0].topic, "r/1");

        let newer = dir.path().join("newer.redb");
        write(&newer, 2);
        let Err(e) = RedbSessionStore::open(&newer) else {
            panic!("a newer file opened");
        };
        assert!(e.to_string().contains("schema version 2"), "{e}");
    }
}

//! The store trait and its embedded `redb` implementation.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use broker::{PersistOp, RestoredMessage, RestoredSession, RestoredState};
use redb::{Database, ReadableTable, TableDefinition};

use crate::codec::{self, Corrupt, QueuedRecord, SessionMeta};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("session_messages");
const INCOMING: TableDefinition<(&str, u16), ()> = TableDefinition::new("session_incoming_qos2");
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");

/// The schema version this binary writes; it opens any version up to it.
const SCHEMA_VERSION: u64 = 1;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("store error: {0}")]
    Redb(Box<redb::Error>),
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
    #[error("data directory has schema version {0}, newer than this binary's {SCHEMA_VERSION}")]
    TooNew(u64),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for KvError {
            fn from(e: $t) -> Self { KvError::Redb(Box::new(e.into())) }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

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
    db: Database,
}

impl RedbSessionStore {
    /// Opens or creates the store file at `path`.
    pub fn open(path: &Path) -> Result<RedbSessionStore, KvError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let version = meta.get("schema_version")?.map(|v| v.value());
            match version {
                Some(v) if v > SCHEMA_VERSION => return Err(KvError::TooNew(v)),
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                }
            }
            txn.open_table(SESSIONS)?;
            txn.open_table(MESSAGES)?;
            txn.open_table(INCOMING)?;
            txn.open_table(RETAINED)?;
        }
        txn.commit()?;
        Ok(RedbSessionStore { db })
    }
}

impl SessionStore for RedbSessionStore {
    fn load(&self) -> Result<RestoredState, KvError> {
        let txn = self.db.begin_read()?;
        let sessions_t = txn.open_table(SESSIONS)?;
        let messages_t = txn.open_table(MESSAGES)?;
        let incoming_t = txn.open_table(INCOMING)?;
        let retained_t = txn.open_table(RETAINED)?;
        let mut state = RestoredState::default();
        for item in sessions_t.iter()? {
            let (k, v) = item?;
            let client_id = k.value();
            let meta = match codec::decode_session(v.value()) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(client_id, error = %e, "skipping unreadable stored session");
                    continue;
                }
            };
            let mut messages = Vec::new();
            for item in messages_t.range((client_id, 0)..=(client_id, u64::MAX))? {
                let (k, v) = item?;
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
            }
            let mut incoming_qos2 = Vec::new();
            for item in incoming_t.range((client_id, 0)..=(client_id, u16::MAX))? {
                incoming_qos2.push(item?.0.value().1);
            }
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
        }
        for item in retained_t.iter()? {
            let (k, v) = item?;
            match codec::decode_retained(v.value()) {
                Ok(m) => state.retained.push(Arc::new(m)),
                Err(e) => {
                    tracing::error!(topic = k.value(), error = %e, "skipping unreadable retained message")
                }
            }
        }
        Ok(state)
    }

    fn apply(&self, ops: &[PersistOp]) -> Result<(), KvError> {
        if ops.is_empty() {
            return Ok(());
        }
        let coalesced = coalesce(ops);
        let txn = self.db.begin_write()?;
        {
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut messages = txn.open_table(MESSAGES)?;
            let mut incoming = txn.open_table(INCOMING)?;
            let mut retained = txn.open_table(RETAINED)?;
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
                        let keys: Vec<u64> = messages
                            .range((id, 0)..=(id, u64::MAX))?
                            .map(|r| r.map(|(k, _)| k.value().1))
                            .collect::<Result<_, _>>()?;
                        for seq in keys {
                            messages.remove((id, seq))?;
                        }
                        let ids: Vec<u16> = incoming
                            .range((id, 0)..=(id, u16::MAX))?
                            .map(|r| r.map(|(k, _)| k.value().1))
                            .collect::<Result<_, _>>()?;
                        for pid in ids {
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
                    // Telemetry goes to the telemetry store, not here.
                    PersistOp::Telemetry { .. } => {}
                }
            }
        }
        txn.commit()?;
        Ok(())
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

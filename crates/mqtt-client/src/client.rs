//! The async client: a spawned task owns a [`Connection`] and serves
//! requests from [`Client`] handles over a channel.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use mqtt_proto::{
    ByteString, ConnAck, Publish, QoS, ReasonCode, SubAck, Subscription, SubscriptionOptions,
    UnsubAck,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::{ClientError, ConnectOptions, Connection, DisconnectReason, Event, TcpTarget};

/// Requests queued towards the connection task.
const COMMAND_QUEUE: usize = 1024;
/// Received messages buffered for `recv`; beyond this the task stops
/// reading from the socket.
const MESSAGE_QUEUE: usize = 1024;
/// Publishes waiting for quota inside the state machine before the task
/// stops taking new requests.
const MAX_QUEUED_PUBLISHES: usize = 4096;

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

enum Command {
    Publish {
        publish: Box<Publish>,
        done: Reply<ReasonCode>,
    },
    Subscribe {
        subscriptions: Vec<Subscription>,
        done: Reply<SubAck>,
    },
    Unsubscribe {
        filters: Vec<ByteString>,
        done: Reply<UnsubAck>,
    },
    Disconnect {
        done: Reply<()>,
    },
}

/// An MQTT client connection with async methods. Dropping it disconnects.
///
/// Received messages are buffered up to a bound; a subscriber must call
/// [`Client::recv`], or the client stops reading from the socket (and so
/// stops seeing acknowledgements too).
#[derive(Debug)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    messages: mpsc::Receiver<Publish>,
    connack: ConnAck,
    task: Option<JoinHandle<()>>,
}

impl Client {
    /// Connects (TCP, CONNECT, CONNACK) and starts the connection task.
    pub async fn connect(
        target: impl Into<TcpTarget>,
        options: ConnectOptions,
    ) -> Result<Client, ClientError> {
        let target = target.into();
        let span = tracing::debug_span!(
            "mqtt_client",
            client_id = %options.client_id,
            broker = %target.addr
        );
        let (conn, connack) = Connection::connect(target, options)
            .instrument(span.clone())
            .await?;
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (message_tx, messages) = mpsc::channel(MESSAGE_QUEUE);
        let task = tokio::spawn(run(conn, command_rx, message_tx).instrument(span));
        Ok(Client {
            commands,
            messages,
            connack,
            task: Some(task),
        })
    }

    /// The server's CONNACK.
    pub fn connack(&self) -> &ConnAck {
        &self.connack
    }

    /// Publishes a message. QoS 0 completes once the message is queued on
    /// the connection; QoS 1 and 2 complete when the server has acknowledged
    /// it (PUBACK, PUBCOMP). Returns the acknowledgement's reason; a failure
    /// reason is [`ClientError::Rejected`].
    pub async fn publish(
        &self,
        topic: impl Into<ByteString>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<ReasonCode, ClientError> {
        self.publish_packet(Publish {
            qos,
            retain,
            topic: topic.into(),
            payload: payload.into(),
            ..Publish::default()
        })
        .await
    }

    /// Publishes a PUBLISH built by the caller (v5 properties). Packet id
    /// and DUP are assigned by the client.
    pub async fn publish_packet(&self, publish: Publish) -> Result<ReasonCode, ClientError> {
        let (done, result) = oneshot::channel();
        self.request(
            Command::Publish {
                publish: Box::new(publish),
                done,
            },
            result,
        )
        .await
    }

    /// Subscribes to filters, each with its maximum QoS, and returns the
    /// SUBACK (one reason code per filter).
    pub async fn subscribe<F: Into<ByteString>>(
        &self,
        filters: impl IntoIterator<Item = (F, QoS)>,
    ) -> Result<SubAck, ClientError> {
        let subscriptions = filters
            .into_iter()
            .map(|(filter, qos)| Subscription {
                filter: filter.into(),
                options: SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            })
            .collect();
        self.subscribe_with(subscriptions).await
    }

    /// Subscribes with full subscription options (v5).
    pub async fn subscribe_with(
        &self,
        subscriptions: Vec<Subscription>,
    ) -> Result<SubAck, ClientError> {
        let (done, result) = oneshot::channel();
        self.request(
            Command::Subscribe {
                subscriptions,
                done,
            },
            result,
        )
        .await
    }

    /// Unsubscribes from filters and returns the UNSUBACK.
    pub async fn unsubscribe<F: Into<ByteString>>(
        &self,
        filters: impl IntoIterator<Item = F>,
    ) -> Result<UnsubAck, ClientError> {
        let filters = filters.into_iter().map(Into::into).collect();
        let (done, result) = oneshot::channel();
        self.request(Command::Unsubscribe { filters, done }, result)
            .await
    }

    /// The next message from a subscription; `None` once the connection
    /// has ended and every buffered message has been taken.
    pub async fn recv(&mut self) -> Option<Publish> {
        self.messages.recv().await
    }

    /// Sends DISCONNECT, waits for it to be written and closes the
    /// connection.
    pub async fn disconnect(mut self) -> Result<(), ClientError> {
        let (done, result) = oneshot::channel();
        let outcome = self.request(Command::Disconnect { done }, result).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        outcome
    }

    async fn request<T>(
        &self,
        command: Command,
        result: oneshot::Receiver<Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        let gone = || ClientError::Disconnected(DisconnectReason::ConnectionLost);
        self.commands.send(command).await.map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }
}

/// Waiters for acknowledgements, by packet id.
#[derive(Default)]
struct Waiters {
    publishes: HashMap<u16, Reply<ReasonCode>>,
    subscribes: HashMap<u16, Reply<SubAck>>,
    unsubscribes: HashMap<u16, Reply<UnsubAck>>,
}

impl Waiters {
    fn fail_all(&mut self, reason: &DisconnectReason) {
        let err = || ClientError::Disconnected(reason.clone());
        for (_, done) in self.publishes.drain() {
            let _ = done.send(Err(err()));
        }
        for (_, done) in self.subscribes.drain() {
            let _ = done.send(Err(err()));
        }
        for (_, done) in self.unsubscribes.drain() {
            let _ = done.send(Err(err()));
        }
    }
}

/// The connection task: the only owner of the connection and its state.
async fn run(
    mut conn: Connection,
    mut commands: mpsc::Receiver<Command>,
    messages: mpsc::Sender<Publish>,
) {
    let mut waiters = Waiters::default();
    let mut incoming: VecDeque<Publish> = VecDeque::new();
    let mut disconnect_reply: Option<Reply<()>> = None;
    let reason = loop {
        if let Some(reason) = dispatch_events(&mut conn, &mut waiters, &mut incoming) {
            break reason;
        }
        while let Some(message) = incoming.pop_front() {
            match messages.try_send(message) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(message)) => {
                    incoming.push_front(message);
                    break;
                }
                // Nobody reads messages any more: drop them.
                Err(mpsc::error::TrySendError::Closed(_)) => incoming.clear(),
            }
        }
        conn.set_read_paused(incoming.len() >= MESSAGE_QUEUE);
        let accepting = conn.state().queued() < MAX_QUEUED_PUBLISHES;
        tokio::select! {
            command = commands.recv(), if accepting => {
                let Some(command) = command else {
                    // Every handle is gone: leave cleanly.
                    let _ = conn.state_mut().disconnect();
                    break DisconnectReason::Local;
                };
                let mut next = Some(command);
                // Take what else is waiting, so that writes coalesce.
                let mut budget = 256;
                while let Some(command) = next.take() {
                    if let Command::Disconnect { done } = command {
                        let _ = conn.state_mut().disconnect();
                        disconnect_reply = Some(done);
                        break;
                    }
                    handle_command(&mut conn, &mut waiters, command);
                    budget -= 1;
                    if budget > 0 {
                        next = commands.try_recv().ok();
                    }
                }
                if disconnect_reply.is_some() {
                    break DisconnectReason::Local;
                }
            }
            driven = conn.drive() => {
                if let Err(e) = driven {
                    let reason = match e {
                        ClientError::Disconnected(reason) => reason,
                        other => {
                            tracing::debug!(error = %other, "connection failed");
                            DisconnectReason::ConnectionLost
                        }
                    };
                    let _ = dispatch_events(&mut conn, &mut waiters, &mut incoming);
                    break reason;
                }
            }
            permit = messages.reserve(), if !incoming.is_empty() => {
                match (permit, incoming.pop_front()) {
                    (Ok(permit), Some(message)) => permit.send(message),
                    (Err(_), _) => incoming.clear(),
                    (Ok(_), None) => {}
                }
            }
        }
    };
    waiters.fail_all(&reason);
    for message in incoming {
        if messages.try_send(message).is_err() {
            break;
        }
    }
    if reason == DisconnectReason::Local {
        let outcome = conn.disconnect().await.map(|_| ());
        if let Some(done) = disconnect_reply {
            let _ = done.send(outcome);
        }
    }
}

fn handle_command(conn: &mut Connection, waiters: &mut Waiters, command: Command) {
    let state = conn.state_mut();
    match command {
        Command::Publish { publish, done } => {
            let qos = publish.qos;
            match state.publish(*publish) {
                Ok(_) if qos == QoS::AtMostOnce => {
                    let _ = done.send(Ok(ReasonCode::SUCCESS));
                }
                Ok(id) => {
                    waiters.publishes.insert(id, done);
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                }
            }
        }
        Command::Subscribe {
            subscriptions,
            done,
        } => match state.subscribe(subscriptions) {
            Ok(id) => {
                waiters.subscribes.insert(id, done);
            }
            Err(e) => {
                let _ = done.send(Err(e));
            }
        },
        Command::Unsubscribe { filters, done } => match state.unsubscribe(filters) {
            Ok(id) => {
                waiters.unsubscribes.insert(id, done);
            }
            Err(e) => {
                let _ = done.send(Err(e));
            }
        },
        Command::Disconnect { done } => {
            let _ = done.send(state.disconnect());
        }
    }
}

/// Routes state-machine events to waiters and the message queue. Returns
/// the reason if the connection has ended.
fn dispatch_events(
    conn: &mut Connection,
    waiters: &mut Waiters,
    incoming: &mut VecDeque<Publish>,
) -> Option<DisconnectReason> {
    while let Some(event) = conn.poll_event() {
        match event {
            Event::Message(publish) => incoming.push_back(publish),
            Event::SubAck(suback) => {
                if let Some(done) = waiters.subscribes.remove(&suback.packet_id) {
                    let _ = done.send(Ok(suback));
                }
            }
            Event::UnsubAck(unsuback) => {
                if let Some(done) = waiters.unsubscribes.remove(&unsuback.packet_id) {
                    let _ = done.send(Ok(unsuback));
                }
            }
            Event::Disconnected { reason } => return Some(reason),
            other => {
                let Some((packet_id, reason_code)) = other.completed_publish() else {
                    continue;
                };
                if let Some(done) = waiters.publishes.remove(&packet_id) {
                    let result = if reason_code.is_error() {
                        Err(ClientError::Rejected(reason_code))
                    } else {
                        Ok(reason_code)
                    };
                    let _ = done.send(result);
                }
            }
        }
    }
    None
}

//! One TCP connection driven by the caller's task.
//!
//! [`Connection`] pairs a [`ClientState`] with a socket. Reads go into one
//! large buffer and every complete packet in it is decoded before the next
//! read; outgoing packets are encoded into one buffer and written with as
//! few `write` calls as the socket allows. Reading and writing never wait on
//! each other: one readiness wait covers both directions, so a peer that is
//! itself blocked writing to us is always drained.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use mqtt_proto::{decode, encode, ConnAck, Publish};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::{ClientError, ClientState, ConnectOptions, DisconnectReason, Event, Phase};

/// The read buffer starts small (an idle connection stays cheap) and grows
/// up to this many bytes per `read` while reads keep filling it.
const MIN_READ_CHUNK: usize = 2 * 1024;
const MAX_READ_CHUNK: usize = 64 * 1024;
/// Encode queued packets until the write buffer holds this much.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// The largest packet we accept when the options set no maximum: the
/// protocol's own limit.
const PROTOCOL_MAX_PACKET: usize = 268_435_455 + 5;
/// How long `disconnect` waits for queued bytes to drain.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where to connect, and optionally from which local address (so that many
/// connections can use several source addresses, e.g. 127.0.0.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTarget {
    pub addr: SocketAddr,
    pub bind: Option<IpAddr>,
}

impl TcpTarget {
    /// Connect from the given local address (port chosen by the system).
    pub fn from_local(addr: SocketAddr, bind: IpAddr) -> TcpTarget {
        TcpTarget {
            addr,
            bind: Some(bind),
        }
    }
}

impl From<SocketAddr> for TcpTarget {
    fn from(addr: SocketAddr) -> TcpTarget {
        TcpTarget { addr, bind: None }
    }
}

/// An MQTT connection over TCP, driven by whoever owns it. See the module
/// documentation.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    state: ClientState,
    rbuf: BytesMut,
    wbuf: BytesMut,
    max_packet_size: usize,
    read_paused: bool,
    read_chunk: usize,
}

impl Connection {
    /// Opens a TCP connection, sends CONNECT and waits for CONNACK. A
    /// refusal is [`ClientError::ConnectionRefused`]. The
    /// [`Event::Connected`] stays in the event queue like every other event.
    pub async fn connect(
        target: impl Into<TcpTarget>,
        options: ConnectOptions,
    ) -> Result<(Connection, ConnAck), ClientError> {
        Connection::resume(target, ClientState::new(options)).await
    }

    /// Connects with an existing session state (after a lost connection):
    /// unacknowledged publishes are resent once CONNACK arrives.
    pub async fn resume(
        target: impl Into<TcpTarget>,
        mut state: ClientState,
    ) -> Result<(Connection, ConnAck), ClientError> {
        let target = target.into();
        let timeout = state.options().connect_timeout;
        let stream = tokio::time::timeout(timeout, open(target))
            .await
            .map_err(|_| ClientError::Timeout("TCP connect"))??;
        stream.set_nodelay(true)?;
        state.connect(Instant::now().into_std())?;
        let max_packet_size = state
            .options()
            .maximum_packet_size
            .map_or(PROTOCOL_MAX_PACKET, |m| {
                usize::try_from(m).unwrap_or(usize::MAX)
            });
        let mut conn = Connection {
            stream,
            state,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            max_packet_size,
            read_paused: false,
            read_chunk: MIN_READ_CHUNK,
        };
        // Events are left for the caller (including any from before a lost
        // connection); the phase tells when CONNACK has arrived.
        while conn.state.phase() == Phase::Connecting {
            if let Err(e) = conn.drive().await {
                return Err(match e {
                    ClientError::Disconnected(DisconnectReason::Refused(code)) => {
                        ClientError::ConnectionRefused(code)
                    }
                    other => other,
                });
            }
        }
        match conn.state.connack().cloned() {
            Some(connack) if conn.state.phase() == Phase::Connected => Ok((conn, connack)),
            _ => Err(ClientError::Disconnected(DisconnectReason::ConnectionLost)),
        }
    }

    /// The state machine, for inspection.
    pub fn state(&self) -> &ClientState {
        &self.state
    }

    /// The state machine, to queue subscriptions or publishes with options
    /// the shortcuts here do not cover. Call [`Connection::drive`] to send.
    pub fn state_mut(&mut self) -> &mut ClientState {
        &mut self.state
    }

    /// Queues a publish (see [`ClientState::publish`]); it goes out on the
    /// next [`Connection::drive`] or [`Connection::flush`].
    pub fn publish(&mut self, publish: Publish) -> Result<u16, ClientError> {
        self.state.publish(publish)
    }

    /// The next event, without doing I/O.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.state.poll_event()
    }

    /// Encoded bytes not yet written to the socket plus packets not yet
    /// encoded (counted as one byte each): a measure of write backlog for
    /// pacing.
    pub fn write_backlog(&self) -> usize {
        self.wbuf.len() + usize::from(self.state.has_transmit())
    }

    /// Stops (or resumes) reading from the socket, to push back on the
    /// server while the application is not consuming messages.
    pub fn set_read_paused(&mut self, paused: bool) {
        self.read_paused = paused;
    }

    /// Makes progress: encodes queued packets, then waits until the socket
    /// can be read or written or a timer is due, and does that work. Input
    /// is decoded and handed to the state machine; fetch the results with
    /// [`Connection::poll_event`].
    ///
    /// Cancel-safe: every change happens after the only `.await`, so this
    /// can be raced in `select!` against the caller's own timers.
    ///
    /// With reading paused and nothing to write, only a timer ends the
    /// wait; race it against something else in that case.
    ///
    /// When the connection has ended (DISCONNECT either way, keep-alive
    /// timeout, protocol error, EOF), the queued bytes are written on a best
    /// effort basis and [`ClientError::Disconnected`] is returned.
    pub async fn drive(&mut self) -> Result<(), ClientError> {
        let now = Instant::now();
        self.state.handle_timeout(now.into_std());
        self.fill_wbuf(now)?;
        if self.state.phase() == Phase::Disconnected {
            return Err(self.close().await);
        }
        let mut interest = None;
        if !self.read_paused {
            interest = Some(Interest::READABLE);
        }
        if !self.wbuf.is_empty() {
            interest = Some(interest.map_or(Interest::WRITABLE, |i| i | Interest::WRITABLE));
        }
        let deadline = self.state.poll_timeout().map(Instant::from_std);
        let ready = async {
            match interest {
                Some(interest) => self.stream.ready(interest).await,
                None => std::future::pending().await,
            }
        };
        let timer = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ready = ready => {
                let ready = ready?;
                if ready.is_writable() {
                    self.write_some()?;
                }
                if ready.is_readable() || ready.is_read_closed() {
                    self.read_some()?;
                }
            }
            () = timer => {
                self.state.handle_timeout(Instant::now().into_std());
            }
        }
        if self.state.phase() == Phase::Disconnected {
            return Err(self.close().await);
        }
        Ok(())
    }

    /// Drives until everything queued has been written to the socket.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        while !self.wbuf.is_empty() || self.state.has_transmit() {
            self.drive().await?;
        }
        Ok(())
    }

    /// Drives until the next event.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        loop {
            if let Some(event) = self.state.poll_event() {
                return Ok(event);
            }
            self.drive().await?;
        }
    }

    /// Sends DISCONNECT, writes what is queued, closes the socket and gives
    /// back the session state.
    pub async fn disconnect(mut self) -> Result<ClientState, ClientError> {
        if self.state.phase() != Phase::Disconnected {
            self.state.disconnect()?;
        }
        self.fill_wbuf(Instant::now())?;
        let stream = &mut self.stream;
        let wbuf = &self.wbuf;
        tokio::time::timeout(CLOSE_TIMEOUT, async {
            stream.write_all(wbuf).await?;
            stream.shutdown().await
        })
        .await
        .map_err(|_| ClientError::Timeout("flushing DISCONNECT"))??;
        Ok(self.state)
    }

    /// Drops the socket without DISCONNECT (as a crash or network failure
    /// would) and gives back the session state for [`Connection::resume`].
    pub fn abort(mut self) -> ClientState {
        self.state.connection_lost();
        self.state
    }

    /// Encodes queued packets into the write buffer.
    fn fill_wbuf(&mut self, now: Instant) -> Result<(), ClientError> {
        let protocol = self.state.protocol();
        let now = now.into_std();
        while self.wbuf.len() < WRITE_HIGH_WATER {
            let Some(packet) = self.state.poll_transmit(now) else {
                break;
            };
            encode(&packet, protocol, &mut self.wbuf)?;
        }
        Ok(())
    }

    /// Writes as much as the socket takes, refilling from the queue.
    fn write_some(&mut self) -> Result<(), ClientError> {
        while !self.wbuf.is_empty() {
            match self.stream.try_write(&self.wbuf) {
                Ok(n) => {
                    self.wbuf.advance(n);
                    if self.wbuf.is_empty() {
                        self.fill_wbuf(Instant::now())?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.state.connection_lost();
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Reads what is available and hands every complete packet to the state
    /// machine.
    fn read_some(&mut self) -> Result<(), ClientError> {
        loop {
            if self.rbuf.capacity() - self.rbuf.len() < self.read_chunk / 4 {
                self.rbuf.reserve(self.read_chunk);
            }
            let room = self.rbuf.capacity() - self.rbuf.len();
            match self.stream.try_read_buf(&mut self.rbuf) {
                Ok(0) => {
                    self.state.connection_lost();
                    return Ok(());
                }
                Ok(n) => {
                    self.decode_all()?;
                    if n < room || self.read_paused {
                        return Ok(());
                    }
                    // The socket had more than the buffer took: read bigger.
                    self.read_chunk = (self.read_chunk * 2).min(MAX_READ_CHUNK);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => {
                    self.state.connection_lost();
                    return Err(e.into());
                }
            }
        }
    }

    fn decode_all(&mut self) -> Result<(), ClientError> {
        let protocol = self.state.protocol();
        let now = Instant::now().into_std();
        loop {
            match decode(&mut self.rbuf, protocol, self.max_packet_size) {
                Ok(Some(packet)) => {
                    if let Err(e) = self.state.handle_packet(now, packet) {
                        tracing::debug!(error = %e, "closing after a protocol violation");
                        return Ok(());
                    }
                    if self.state.phase() == Phase::Disconnected {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    tracing::debug!(error = %e, "undecodable input from the server");
                    self.state.handle_decode_error(e.reason_code());
                    return Err(e.into());
                }
            }
        }
    }

    /// Writes what is queued (best effort, without blocking) and shuts the
    /// socket; returns the error describing why the connection ended.
    async fn close(&mut self) -> ClientError {
        let _ = self.fill_wbuf(Instant::now());
        while !self.wbuf.is_empty() {
            match self.stream.try_write(&self.wbuf) {
                Ok(n) => self.wbuf.advance(n),
                Err(_) => break,
            }
        }
        self.wbuf.clear();
        let _ = tokio::time::timeout(Duration::from_millis(100), self.stream.shutdown()).await;
        let reason = self
            .state
            .closed_reason()
            .cloned()
            .unwrap_or(DisconnectReason::ConnectionLost);
        ClientError::Disconnected(reason)
    }
}

/// Opens the TCP connection, bound to a local address if asked.
async fn open(target: TcpTarget) -> io::Result<TcpStream> {
    let socket = if target.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = target.bind {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(target.addr).await
}

//! One simulated device: a task that owns its MQTT connection (one
//! [`Connection`], driven directly, no channels) and its [`Machine`], and
//! speaks the device contract around them.
//!
//! Per connection: subscribe to the twin replies and commands, ask for the
//! twin, then publish telemetry at the jittered interval while answering
//! what arrives. The session (clean start false, session expiry in v5)
//! survives reconnections, so QoS 1 commands sent while the device was
//! offline arrive when it is back. A lost connection is retried with
//! back-off (1 s, 2 s, ... 30 s); a reboot command and churn take the
//! device offline for a few seconds on purpose.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iot_types::device_topics::{self, DeviceTopic, TwinTopic};
use mqtt_client::{ClientState, ConnectOptions, Connection, Event, Publish, QoS};
use mqtt_proto::{Subscription, SubscriptionOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::command::{self, Action, DeviceView};
use crate::machine::{Machine, MachineKind};
use crate::report::Stats;
use crate::twin::{self, Reported, TwinChange};
use crate::FleetOptions;

/// The filters a device subscribes to (QoS 1): the replies of its main
/// twin and its commands. `commands/+` matches `commands/{cmd_id}` but not
/// our own `commands/{cmd_id}/response`.
fn subscriptions(id: &str) -> [String; 6] {
    let twin = |t| device_topics::twin(id, "", t);
    [
        twin(TwinTopic::Delta),
        twin(TwinTopic::GetAccepted),
        twin(TwinTopic::GetRejected),
        twin(TwinTopic::UpdateAccepted),
        twin(TwinTopic::UpdateRejected),
        device_topics::command(id, "+"),
    ]
}
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection that lasted this long resets the back-off (one that the
/// server ends at once keeps backing off).
const STABLE_CONNECTION: Duration = Duration::from_secs(10);
/// Unacknowledged QoS 1 publishes at most before telemetry samples are
/// skipped (the server's receive maximum may be lower).
const MAX_PENDING_PUBLISHES: usize = 32;
/// The receive maximum we announce (v5): commands and twin replies in
/// flight towards us.
const RECEIVE_MAXIMUM: u16 = 32;
/// How long a reboot waits for the acknowledgement of its response.
const REBOOT_ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Seconds offline after a reboot, and after churn.
const REBOOT_OFFLINE_S: std::ops::Range<f64> = 2.0..5.0;
const OUTAGE_S: std::ops::Range<f64> = 5.0..30.0;
/// Recent command ids and their responses: a redelivered command is
/// answered again without acting again.
const RECENT_COMMANDS: usize = 16;

/// What every device task shares.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub options: Arc<FleetOptions>,
    pub stats: Arc<Stats>,
    pub stop: CancellationToken,
    /// Caps connection handshakes in progress.
    pub connect_permits: Arc<Semaphore>,
    /// The origin of machine time.
    pub origin: Instant,
}

/// One device of the fleet.
#[derive(Debug, Clone)]
pub(crate) struct DeviceConfig {
    pub id: String,
    pub token: String,
    pub kind: MachineKind,
    pub seed: u64,
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The fleet is stopping.
    Stop,
    /// The connection failed or the server closed it.
    Lost(String),
    /// A reboot command: offline this long.
    Reboot(Duration),
    /// Churn: offline this long.
    Outage(Duration),
}

/// What a publish awaiting acknowledgement was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PubKind {
    Telemetry,
    Other,
}

/// A reboot waiting for its response to be acknowledged.
#[derive(Debug)]
struct PendingReboot {
    packet_id: u16,
    deadline: Instant,
    offline: Duration,
}

/// Runs one device until `ctx.stop` is cancelled.
pub(crate) async fn run(config: DeviceConfig, ctx: Ctx) {
    let span = tracing::info_span!("device", id = %config.id);
    let mut device = Device::new(config, ctx);
    tracing::Instrument::instrument(device.run(), span).await;
}

struct Device {
    id: String,
    token: String,
    kind: MachineKind,
    machine: Machine,
    rng: StdRng,
    ctx: Ctx,
    booted: Instant,
    next_token: u64,
    /// A rejected twin request has been retried (reset when an update is
    /// accepted), so that a server that keeps rejecting is not looped on.
    twin_retried: bool,
    pending: HashMap<u16, PubKind>,
    recent: VecDeque<(String, Bytes)>,
    reboot: Option<PendingReboot>,
    seen_faults: u64,
    /// Said once per failure streak, then only at debug level.
    warned_connect: bool,
    warned_rejected: bool,
}

impl Device {
    fn new(config: DeviceConfig, ctx: Ctx) -> Device {
        let now = ctx.origin.elapsed();
        let machine = Machine::new(
            config.kind,
            config.seed,
            ctx.options.fault_rate_per_hour,
            now,
        );
        Device {
            id: config.id,
            token: config.token,
            kind: config.kind,
            machine,
            rng: StdRng::seed_from_u64(config.seed.rotate_left(17) ^ 0x5eed),
            booted: Instant::now(),
            ctx,
            next_token: 0,
            twin_retried: false,
            pending: HashMap::new(),
            recent: VecDeque::new(),
            reboot: None,
            seen_faults: 0,
            warned_connect: false,
            warned_rejected: false,
        }
    }

    fn connect_options(&self) -> ConnectOptions {
        let o = &self.ctx.options;
        let mut options = ConnectOptions::new(self.id.clone())
            .protocol(o.protocol)
            .clean_start(false)
            .keep_alive(o.keep_alive)
            .credentials(
                self.id.clone(),
                Bytes::from(self.token.clone().into_bytes()),
            )
            .max_inflight(MAX_PENDING_PUBLISHES as u16);
        if o.protocol.is_v5() {
            options = options
                .session_expiry(o.session_expiry)
                .receive_maximum(RECEIVE_MAXIMUM);
        }
        options
    }

    /// Machine time.
    fn now(&self) -> Duration {
        self.ctx.origin.elapsed()
    }

    /// Waits `how_long` unless the fleet stops first (then `false`).
    async fn pause(&self, how_long: Duration) -> bool {
        tokio::select! {
            _ = self.ctx.stop.cancelled() => false,
            _ = tokio::time::sleep(how_long) => true,
        }
    }

    /// Connects, serves, reconnects, until the fleet stops.
    async fn run(&mut self) {
        let stats = self.ctx.stats.clone();
        let stop = self.ctx.stop.clone();
        let mut session: Option<ClientState> = None;
        let mut backoff = INITIAL_BACKOFF;
        while !stop.is_cancelled() {
            let state = match session.take() {
                Some(state) => state,
                None => {
                    // A new session state: ids of the old one mean nothing.
                    self.pending.clear();
                    ClientState::new(self.connect_options())
                }
            };
            let permits = self.ctx.connect_permits.clone();
            let connected = tokio::select! {
                _ = stop.cancelled() => break,
                connected = async {
                    let _permit = permits.acquire_owned().await;
                    Connection::resume(self.ctx.options.broker, state).await
                } => connected,
            };
            let mut conn = match connected {
                Ok((conn, _connack)) => conn,
                Err(e) => {
                    Stats::inc(&stats.connect_failures);
                    if self.warned_connect {
                        tracing::debug!(error = %e, retry_in = ?backoff, "cannot connect");
                    } else {
                        tracing::warn!(error = %e, retry_in = ?backoff, "cannot connect; retrying with back-off");
                        stats.error(format!("{}: cannot connect: {e}", self.id));
                        self.warned_connect = true;
                    }
                    if !self.pause(backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            self.warned_connect = false;
            Stats::inc(&stats.connects);
            Stats::inc(&stats.connected);
            tracing::debug!("connected");
            let since = Instant::now();
            let end = self.serve(&mut conn).await;
            Stats::dec(&stats.connected);
            if since.elapsed() >= STABLE_CONNECTION {
                backoff = INITIAL_BACKOFF;
            }
            self.reboot = None;
            match end {
                End::Stop => {
                    if let Err(e) = conn.disconnect().await {
                        tracing::debug!(error = %e, "disconnect at stop");
                    }
                    break;
                }
                End::Lost(reason) => {
                    Stats::inc(&stats.connections_lost);
                    tracing::info!(%reason, retry_in = ?backoff, "connection lost");
                    session = Some(conn.abort());
                    if !self.pause(backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                End::Reboot(offline) => {
                    Stats::inc(&stats.reboots);
                    tracing::info!(offline = ?offline, "rebooting");
                    session = conn.disconnect().await.ok();
                    if !self.pause(offline).await {
                        break;
                    }
                    self.booted = Instant::now();
                }
                End::Outage(offline) => {
                    Stats::inc(&stats.outages);
                    tracing::debug!(offline = ?offline, "going offline (churn)");
                    session = Some(conn.abort());
                    if !self.pause(offline).await {
                        break;
                    }
                }
            }
        }
    }

    /// Serves one connection until it ends.
    async fn serve(&mut self, conn: &mut Connection) -> End {
        let subscriptions = subscriptions(&self.id)
            .into_iter()
            .map(|filter| Subscription {
                filter: filter.into(),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..SubscriptionOptions::default()
                },
            })
            .collect();
        if let Err(e) = conn.state_mut().subscribe(subscriptions) {
            return End::Lost(format!("cannot subscribe: {e}"));
        }
        self.twin_retried = false;
        self.request_twin(conn);

        let stop = self.ctx.stop.clone();
        let interval = self.ctx.options.interval;
        // The first sample at a random point of the first interval, so that
        // devices do not publish in lockstep.
        let mut next_telemetry = Instant::now() + interval.mul_f64(self.rng.random::<f64>());
        let outage_at = self.next_outage();
        loop {
            while let Some(event) = conn.poll_event() {
                if let Some(end) = self.on_event(conn, event) {
                    return end;
                }
            }
            let reboot_at = self.reboot.as_ref().map(|r| r.deadline);
            let far = Instant::now() + Duration::from_secs(86_400);
            tokio::select! {
                _ = stop.cancelled() => return End::Stop,
                driven = conn.drive() => {
                    if let Err(e) = driven {
                        // Acknowledgements that came with the end still count.
                        while let Some(event) = conn.poll_event() {
                            let _ = self.on_event(conn, event);
                        }
                        return End::Lost(e.to_string());
                    }
                }
                _ = tokio::time::sleep_until(next_telemetry) => {
                    self.publish_telemetry(conn);
                    let step = interval.mul_f64(self.rng.random_range(0.9..1.1));
                    next_telemetry = (next_telemetry + step).max(Instant::now());
                }
                _ = tokio::time::sleep_until(outage_at.unwrap_or(far)), if outage_at.is_some() => {
                    return End::Outage(self.random_secs(OUTAGE_S));
                }
                _ = tokio::time::sleep_until(reboot_at.unwrap_or(far)), if reboot_at.is_some() => {
                    let offline = self.reboot.take().map_or(Duration::ZERO, |r| r.offline);
                    tracing::debug!("reboot response not acknowledged in time");
                    return End::Reboot(offline);
                }
            }
        }
    }

    fn random_secs(&mut self, range: std::ops::Range<f64>) -> Duration {
        Duration::from_secs_f64(self.rng.random_range(range))
    }

    /// When churn takes this device offline next (`None`: never).
    fn next_outage(&mut self) -> Option<Instant> {
        let p = self.ctx.options.churn_per_minute.clamp(0.0, 0.999);
        if p <= 0.0 {
            return None;
        }
        // A probability p per minute is a rate of -ln(1 - p) per minute;
        // the waiting time of a Poisson process is exponential.
        let rate_per_s = -(1.0 - p).ln() / 60.0;
        let u = self.rng.random::<f64>().max(f64::MIN_POSITIVE);
        let wait = (-u.ln() / rate_per_s).min(1e7);
        Some(Instant::now() + Duration::from_secs_f64(wait))
    }

    fn on_event(&mut self, conn: &mut Connection, event: Event) -> Option<End> {
        let stats = &self.ctx.stats;
        match event {
            Event::Message(publish) => self.on_message(conn, publish),
            Event::PubAck { .. } | Event::PubComp { .. } => {
                let (packet_id, reason_code) = event.completed_publish()?;
                let kind = self.pending.remove(&packet_id);
                if reason_code.is_error() {
                    Stats::inc(&stats.publishes_rejected);
                    if self.warned_rejected {
                        tracing::debug!(reason = %reason_code, "publish rejected");
                    } else {
                        tracing::warn!(reason = %reason_code, "publish rejected by the broker");
                        stats.error(format!("{}: publish rejected: {reason_code}", self.id));
                        self.warned_rejected = true;
                    }
                } else if kind == Some(PubKind::Telemetry) {
                    Stats::inc(&stats.telemetry_acked);
                }
                if self
                    .reboot
                    .as_ref()
                    .is_some_and(|r| r.packet_id == packet_id)
                {
                    let offline = self.reboot.take().map_or(Duration::ZERO, |r| r.offline);
                    return Some(End::Reboot(offline));
                }
            }
            Event::SubAck(suback) => {
                for (code, topic) in suback.reason_codes.iter().zip(subscriptions(&self.id)) {
                    if code.is_error() {
                        tracing::warn!(topic, reason = %code, "subscription refused");
                        stats.error(format!(
                            "{}: subscription to {topic} refused: {code}",
                            self.id
                        ));
                    }
                }
            }
            // The end of a connection is seen by `drive`; a stale
            // `Disconnected` from before a resume is no news.
            _ => {}
        }
        None
    }

    fn on_message(&mut self, conn: &mut Connection, publish: Publish) {
        let stats = self.ctx.stats.clone();
        let payload = &publish.payload[..];
        match device_topics::parse(&publish.topic) {
            Some(DeviceTopic::Twin {
                device,
                name: "",
                topic,
            }) if device == self.id => match topic {
                TwinTopic::Delta => {
                    Stats::inc(&stats.twin_deltas);
                    match twin::on_delta(payload) {
                        Ok(change) => self.apply_twin(conn, change),
                        Err(e) => tracing::warn!(error = %e, "unusable twin delta"),
                    }
                }
                TwinTopic::GetAccepted => match twin::on_get_accepted(payload, &self.reported()) {
                    Ok(change) => self.apply_twin(conn, change),
                    Err(e) => tracing::warn!(error = %e, "unusable twin document"),
                },
                TwinTopic::UpdateAccepted => self.twin_retried = false,
                TwinTopic::GetRejected | TwinTopic::UpdateRejected => {
                    Stats::inc(&stats.twin_rejected);
                    let (code, message) = twin::on_rejected(payload);
                    let topic = topic.suffix();
                    if self.twin_retried {
                        tracing::warn!(topic, code, %message, "twin request rejected again");
                    } else {
                        tracing::warn!(topic, code, %message, "twin request rejected; asking for the twin again");
                        self.twin_retried = true;
                        self.request_twin(conn);
                    }
                }
                _ => tracing::debug!(topic = %publish.topic, "message on an unexpected topic"),
            },
            Some(DeviceTopic::Command { device, command }) if device == self.id => {
                self.on_command(conn, command, payload);
            }
            _ => tracing::debug!(topic = %publish.topic, "message on an unexpected topic"),
        }
    }

    /// The device's own values for a twin report.
    fn reported(&self) -> Reported {
        Reported {
            speed: self.machine.target_rpm(),
            mode: self.machine.mode(),
            firmware: self.ctx.options.firmware.clone(),
            kind: self.kind.as_str(),
        }
    }

    fn apply_twin(&mut self, conn: &mut Connection, change: TwinChange) {
        for (field, reason) in &change.refused {
            tracing::warn!(field, reason, "desired value not applied");
        }
        let now = self.now();
        self.machine.advance(now);
        if let Some(rpm) = change.speed {
            self.machine.set_speed(rpm);
        }
        if let Some(mode) = change.mode {
            self.machine.set_mode(mode);
        }
        if !change.reported.is_empty() {
            self.report(conn, change.reported);
        }
    }

    fn client_token(&mut self) -> String {
        self.next_token += 1;
        format!("{}-{}", self.id, self.next_token)
    }

    fn request_twin(&mut self, conn: &mut Connection) {
        let token = self.client_token();
        let topic = device_topics::twin_get(&self.id);
        self.publish(conn, topic, twin::get_request(&token), PubKind::Other);
    }

    fn report(&mut self, conn: &mut Connection, reported: Map<String, Value>) {
        let token = self.client_token();
        let topic = device_topics::twin_update(&self.id);
        let payload = twin::update_request(&reported, &token);
        if self.publish(conn, topic, payload, PubKind::Other).is_some() {
            Stats::inc(&self.ctx.stats.twin_reports);
        }
    }

    fn on_command(&mut self, conn: &mut Connection, cmd_id: &str, payload: &[u8]) {
        let stats = self.ctx.stats.clone();
        let topic = device_topics::command_response(&self.id, cmd_id);
        if let Some((_, response)) = self.recent.iter().find(|(id, _)| id == cmd_id) {
            tracing::debug!(cmd_id, "command redelivered; answering again");
            let response = response.clone();
            self.publish(conn, topic, response, PubKind::Other);
            return;
        }
        let now = self.now();
        let reading = self.machine.state(now);
        let view = DeviceView {
            uptime_s: self.booted.elapsed().as_secs(),
            reading,
            target_rpm: self.machine.target_rpm(),
            mode: self.machine.mode(),
            firmware: &self.ctx.options.firmware,
            kind: self.kind.as_str(),
            fault: self.machine.in_fault(),
        };
        let outcome = command::handle(payload, &view);
        let response = Bytes::from(outcome.response.to_string().into_bytes());
        if self.recent.len() >= RECENT_COMMANDS {
            self.recent.pop_front();
        }
        self.recent
            .push_back((cmd_id.to_string(), response.clone()));
        let sent = self.publish(conn, topic, response, PubKind::Other);
        Stats::inc(&stats.commands_answered);
        if outcome.status != command::STATUS_OK {
            Stats::inc(&stats.commands_failed);
        }
        tracing::debug!(cmd_id, status = outcome.status, "command answered");
        match outcome.action {
            Action::None => {}
            Action::SetSpeed { rpm, value } => {
                self.machine.set_speed(rpm);
                let mut reported = Map::new();
                reported.insert("speed".into(), value);
                self.report(conn, reported);
            }
            Action::Reboot => {
                if let (Some(packet_id), None) = (sent, &self.reboot) {
                    let offline = self.random_secs(REBOOT_OFFLINE_S);
                    self.reboot = Some(PendingReboot {
                        packet_id,
                        deadline: Instant::now() + REBOOT_ACK_TIMEOUT,
                        offline,
                    });
                }
            }
        }
    }

    fn publish_telemetry(&mut self, conn: &mut Connection) {
        let stats = self.ctx.stats.clone();
        let state = conn.state();
        if state.inflight() + state.queued() >= MAX_PENDING_PUBLISHES {
            Stats::inc(&stats.telemetry_skipped);
            return;
        }
        let now = self.now();
        let reading = self.machine.sample(now);
        let faults = self.machine.faults();
        if faults > self.seen_faults {
            Stats::add(&stats.faults, faults - self.seen_faults);
            self.seen_faults = faults;
            tracing::info!("machine starts overheating (simulated fault)");
        }
        let topic = device_topics::telemetry(&self.id);
        let payload = reading.to_json().to_string().into_bytes();
        if self
            .publish(conn, topic, payload, PubKind::Telemetry)
            .is_some()
        {
            Stats::inc(&stats.telemetry_sent);
        }
    }

    /// Queues a QoS 1 publish; its packet id, or `None` (counted as an
    /// error) if it cannot be queued.
    fn publish(
        &mut self,
        conn: &mut Connection,
        topic: String,
        payload: impl Into<Bytes>,
        kind: PubKind,
    ) -> Option<u16> {
        let publish = Publish {
            qos: QoS::AtLeastOnce,
            topic: topic.as_str().into(),
            payload: payload.into(),
            ..Publish::default()
        };
        match conn.publish(publish) {
            Ok(packet_id) => {
                self.pending.insert(packet_id, kind);
                Some(packet_id)
            }
            Err(e) => {
                tracing::debug!(topic, error = %e, "cannot publish");
                self.ctx
                    .stats
                    .error(format!("{}: cannot publish to {topic}: {e}", self.id));
                None
            }
        }
    }
}

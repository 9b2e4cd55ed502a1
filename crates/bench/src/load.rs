//! Publish/subscribe loads: pairs, fan-in and fan-out.
//!
//! Every client is one [`Connection`] owned by its own task, driven
//! directly (no channel per message): a publisher queues a batch of
//! publishes up to its in-flight window and write backlog, then drives the
//! socket once. Each payload starts with the send time (nanoseconds since a
//! shared start instant, little-endian), so subscribers measure end-to-end
//! latency, then the publisher's index and its sequence number (u32
//! little-endian each), so that the run can say which acknowledged
//! messages never arrived (see `accounting.rs`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use mqtt_client::{ClientError, ConnectOptions, Connection, Event, TcpTarget};
use mqtt_proto::{ByteString, Publish, QoS, Subscription, SubscriptionOptions};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::accounting::{acked_not_delivered, Seen, SeqSet, SubscriberOutcome};
use crate::args::{Mode, Plan};
use crate::report::LoadReport;
use crate::stats::{latency_histogram, record_latency, LatencySummary, Shared};
use crate::{BenchError, ErrorLog};

/// Queue publishes until this many bytes wait for the socket.
const WRITE_BACKLOG: usize = 64 * 1024;
/// Publishes queued per batch at most (then the task drives its socket and
/// lets other tasks run).
const BATCH: usize = 256;
/// Once publishing has stopped, a subscriber that has seen nothing for this
/// long stops waiting.
const IDLE_AFTER_PUBLISHING: Duration = Duration::from_secs(1);

/// The timeline of a run, shared by all workers.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    /// Origin of the timestamps in payloads.
    base: Instant,
    warmup_end: Instant,
    end: Instant,
    drain: Duration,
}

/// Runs a load and measures it.
pub(crate) async fn run_load(
    plan: &Plan,
    addr: SocketAddr,
    shared: Arc<Shared>,
    errors: ErrorLog,
) -> Result<LoadReport, BenchError> {
    let base = Instant::now();
    let run_id = crate::run_id();
    let prefix = format!("{}/{run_id}", plan.topic_prefix);
    let publish_topic = |i: usize| -> ByteString {
        match plan.mode {
            Mode::FanOut => format!("{prefix}/all").into(),
            _ => format!("{prefix}/{i}").into(),
        }
    };
    let filter = |i: usize| -> ByteString {
        match plan.mode {
            Mode::Pairs => format!("{prefix}/{i}").into(),
            Mode::FanIn => format!("{prefix}/+").into(),
            _ => format!("{prefix}/all").into(),
        }
    };
    // How many subscribers receive each published message.
    let fanout = match plan.mode {
        Mode::Pairs => 1,
        _ => plan.subscribers as u64,
    };

    // Subscribers run on a runtime of their own, so that publishers going
    // flat out cannot starve them of CPU time (which would measure the
    // load generator, not the broker). They connect first, so that nothing
    // published is missed.
    let sub_runtime = SubscriberRuntime::new(plan.subscriber_threads)?;
    let semaphore = Arc::new(Semaphore::new(plan.concurrency));
    let (start_tx, start_rx) = watch::channel::<Option<Timeline>>(None);
    let (ready_tx, mut ready_rx) =
        mpsc::channel::<(usize, Result<(), BenchError>)>(plan.subscribers.max(1));
    let mut sub_tasks = Vec::with_capacity(plan.subscribers);
    for i in 0..plan.subscribers {
        let options = client_options(plan, format!("{}-{run_id}-s{i}", plan.topic_prefix));
        let target = TcpTarget {
            addr,
            bind: plan.source_for(i),
        };
        let subscription = Subscription {
            filter: filter(i),
            options: SubscriptionOptions {
                qos: plan.qos,
                ..SubscriptionOptions::default()
            },
        };
        let semaphore = semaphore.clone();
        let ready = ready_tx.clone();
        let mut start = start_rx.clone();
        let hist = latency_histogram(plan.subscribers)?;
        let worker = SubscriberWorker {
            index: i,
            shared: shared.clone(),
            errors: errors.clone(),
            fanout,
            publishers: plan.publishers as u64,
        };
        sub_tasks.push(sub_runtime.handle().spawn(async move {
            let permit = semaphore.acquire_owned().await;
            let connected = connect_and_subscribe(target, options, subscription).await;
            drop(permit);
            let conn = match connected {
                Ok(conn) => {
                    Shared::add(&worker.shared.connections, 1);
                    let _ = ready.send((i, Ok(()))).await;
                    conn
                }
                Err(e) => {
                    let _ = ready.send((i, Err(e))).await;
                    return None;
                }
            };
            drop(ready);
            let timeline = loop {
                if let Some(timeline) = *start.borrow_and_update() {
                    break timeline;
                }
                if start.changed().await.is_err() {
                    return None;
                }
            };
            Some(worker.run(conn, timeline, hist).await)
        }));
    }
    drop(ready_tx);
    for _ in 0..plan.subscribers {
        match ready_rx.recv().await {
            Some((_, Ok(()))) => {}
            Some((i, Err(e))) => {
                sub_tasks.iter().for_each(|t| t.abort());
                return Err(match e {
                    BenchError::Client { source, .. } => BenchError::Client {
                        role: "subscriber",
                        index: i,
                        source,
                    },
                    other => other,
                });
            }
            None => {
                return Err(BenchError::Task(
                    "a subscriber task ended early".to_string(),
                ))
            }
        }
    }

    let mut setups = JoinSet::new();
    for i in 0..plan.publishers {
        let options = client_options(plan, format!("{}-{run_id}-p{i}", plan.topic_prefix));
        let target = TcpTarget {
            addr,
            bind: plan.source_for(plan.subscribers + i),
        };
        let semaphore = semaphore.clone();
        let shared = shared.clone();
        setups.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let result = Connection::connect(target, options)
                .await
                .map(|(conn, _)| conn)
                .map_err(|source| BenchError::Client {
                    role: "publisher",
                    index: i,
                    source,
                });
            if result.is_ok() {
                Shared::add(&shared.connections, 1);
            }
            (i, result)
        });
    }
    let publishers = match collect_setups(&mut setups, plan.publishers, "publisher").await {
        Ok(publishers) => publishers,
        Err(e) => {
            sub_tasks.iter().for_each(|t| t.abort());
            return Err(e);
        }
    };

    let t0 = Instant::now();
    let warmup_end = t0 + plan.warmup;
    let timeline = Timeline {
        base,
        warmup_end,
        end: warmup_end + plan.duration,
        drain: plan.drain,
    };
    let _ = start_tx.send(Some(timeline));

    let per_publisher_count = if plan.count == 0 {
        u64::MAX
    } else {
        plan.count.div_ceil(plan.publishers as u64)
    };
    let interval = if plan.rate == 0 {
        None
    } else {
        Some(Duration::from_secs_f64(
            plan.publishers as f64 / plan.rate as f64,
        ))
    };
    let mut pub_tasks = JoinSet::new();
    for (i, conn) in publishers.into_iter().enumerate() {
        // Spread paced publishers over the interval instead of in step.
        let first_due = match interval {
            Some(iv) => t0 + iv.mul_f64(i as f64 / plan.publishers as f64),
            None => t0,
        };
        let worker = PublisherWorker {
            timeline,
            shared: shared.clone(),
            errors: errors.clone(),
            index: u32::try_from(i).unwrap_or(u32::MAX),
            topic: publish_topic(i),
            qos: plan.qos,
            payload: plan.payload,
            window: u64::from(plan.inflight),
            interval,
            first_due,
            count: per_publisher_count,
        };
        pub_tasks.spawn(worker.run(conn));
    }

    let mut published = Vec::with_capacity(plan.publishers);
    while let Some(joined) = pub_tasks.join_next().await {
        published.push(joined.map_err(|e| BenchError::Task(e.to_string()))?);
    }
    let mut received = Vec::with_capacity(plan.subscribers);
    for task in sub_tasks {
        let joined = task.await.map_err(|e| BenchError::Task(e.to_string()))?;
        received.extend(joined);
    }
    drop(sub_runtime);

    let mut hist = latency_histogram(plan.subscribers)?;
    for r in &received {
        hist.add(&r.hist)
            .map_err(|e| BenchError::Histogram(format!("{e:?}")))?;
    }
    let window_end = published
        .iter()
        .map(|p| p.stopped_at)
        .max()
        .unwrap_or(timeline.end)
        .min(timeline.end);
    let window_s = window_end
        .saturating_duration_since(timeline.warmup_end)
        .as_secs_f64();
    if window_s <= 0.0 {
        errors.record(
            &shared,
            "publishing ended before the warm-up did: no measured window".to_string(),
        );
    }
    let per_sec = |n: u64| {
        if window_s > 0.0 {
            n as f64 / window_s
        } else {
            0.0
        }
    };
    let sent_window = published.iter().map(|p| p.sent_window).sum();
    let sent_total: u64 = published.iter().map(|p| p.sent_total).sum();
    let received_window = received.iter().map(|r| r.received_window).sum();
    let received_total: u64 = received.iter().map(|r| r.received_total).sum();
    let expected_total = sent_total * fanout;
    let acked_total: u64 = published.iter().map(|p| p.acked).sum();
    // Per message: which acknowledged messages a connected, matching
    // subscriber never received. Subscriber i of a pairs run listens to
    // publisher i only; in fan-in and fan-out every subscriber listens to
    // every publisher. QoS 0 acknowledges nothing, so its loss is 0 here
    // and shows in `missing` instead.
    // Tasks finish in any order: place each result at its client's index.
    let mut acked_sets = vec![SeqSet::default(); plan.publishers];
    for p in &published {
        if let Some(slot) = acked_sets.get_mut(p.index as usize) {
            slot.clone_from(&p.acked_seqs);
        }
    }
    let mut outcomes: Vec<SubscriberOutcome> = (0..plan.subscribers)
        .map(|_| SubscriberOutcome {
            seen: Seen::default(),
            disconnected: true,
        })
        .collect();
    for r in &received {
        if let Some(slot) = outcomes.get_mut(r.index) {
            slot.clone_from(&r.outcome);
        }
    }
    let pairs = plan.mode == Mode::Pairs;
    let loss = acked_not_delivered(&acked_sets, &outcomes, |s, p| !pairs || s == p);
    Ok(LoadReport {
        window_s,
        sent_window,
        received_window,
        sent_per_sec: per_sec(sent_window),
        received_per_sec: per_sec(received_window),
        sent_total,
        acked_total,
        refused_total: published.iter().map(|p| p.refused).sum(),
        received_total,
        expected_total,
        missing: expected_total.saturating_sub(received_total),
        unacked: if plan.qos == QoS::AtMostOnce {
            0
        } else {
            sent_total.saturating_sub(acked_total)
        },
        expected_acked_deliveries: loss.expected_acked,
        acked_not_delivered: loss.acked_not_delivered,
        duplicates: loss.duplicates,
        subscribers_disconnected: loss.subscribers_disconnected,
        latency: LatencySummary::from_histogram(&hist),
    })
}

/// Options shared by every client of a run.
pub(crate) fn client_options(plan: &Plan, client_id: String) -> ConnectOptions {
    let mut options = ConnectOptions::new(client_id)
        .protocol(plan.protocol)
        .clean_start(plan.clean_session)
        .keep_alive(plan.keep_alive)
        .max_inflight(plan.inflight);
    if let Some(expiry) = plan.session_expiry {
        options = options.session_expiry(expiry);
    }
    options
}

async fn connect_and_subscribe(
    target: TcpTarget,
    options: ConnectOptions,
    subscription: Subscription,
) -> Result<Connection, BenchError> {
    let client_err = |source| BenchError::Client {
        role: "subscriber",
        index: 0,
        source,
    };
    let (mut conn, _) = Connection::connect(target, options)
        .await
        .map_err(client_err)?;
    let filter = subscription.filter.to_string();
    let id = conn
        .state_mut()
        .subscribe(vec![subscription])
        .map_err(client_err)?;
    let suback = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match conn.next_event().await? {
                Event::SubAck(suback) if suback.packet_id == id => return Ok(suback),
                _ => {}
            }
        }
    })
    .await
    .map_err(|_| client_err(ClientError::Timeout("SUBACK")))?
    .map_err(client_err)?;
    match suback.reason_codes.first() {
        Some(code) if !code.is_error() => Ok(conn),
        other => Err(BenchError::SubscribeRefused {
            filter,
            reason: other.map_or("none".to_string(), |c| c.to_string()),
        }),
    }
}

/// Waits for every setup task; the first failure fails the run.
async fn collect_setups(
    setups: &mut JoinSet<(usize, Result<Connection, BenchError>)>,
    n: usize,
    role: &'static str,
) -> Result<Vec<Connection>, BenchError> {
    let mut slots: Vec<Option<Connection>> = (0..n).map(|_| None).collect();
    while let Some(joined) = setups.join_next().await {
        let (i, result) = joined.map_err(|e| BenchError::Task(e.to_string()))?;
        match result {
            Ok(conn) => {
                if let Some(slot) = slots.get_mut(i) {
                    *slot = Some(conn);
                }
            }
            Err(e) => {
                setups.abort_all();
                return Err(match e {
                    BenchError::Client { source, .. } => BenchError::Client {
                        role,
                        index: i,
                        source,
                    },
                    other => other,
                });
            }
        }
    }
    Ok(slots.into_iter().flatten().collect())
}

/// Bytes every payload needs: send time, publisher index, sequence.
pub(crate) const PAYLOAD_HEADER: usize = 16;

/// The payload: send time in nanoseconds since `base`, the publisher's
/// index and the message's sequence number, then zeros.
fn payload(base: Instant, now: Instant, size: usize, publisher: u32, seq: u32) -> Bytes {
    let mut buf = BytesMut::with_capacity(size.max(PAYLOAD_HEADER));
    let nanos = u64::try_from(now.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX);
    buf.put_u64_le(nanos);
    buf.put_u32_le(publisher);
    buf.put_u32_le(seq);
    buf.resize(size.max(PAYLOAD_HEADER), 0);
    buf.freeze()
}

/// The publisher index and sequence number carried in a payload.
fn message_id(payload: &[u8]) -> Option<(u32, u32)> {
    let publisher: [u8; 4] = payload.get(8..12)?.try_into().ok()?;
    let seq: [u8; 4] = payload.get(12..16)?.try_into().ok()?;
    Some((u32::from_le_bytes(publisher), u32::from_le_bytes(seq)))
}

/// The send time carried in a payload, if it has one.
fn sent_at(base: Instant, payload: &[u8]) -> Option<Instant> {
    let bytes: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    base.checked_add(Duration::from_nanos(u64::from_le_bytes(bytes)))
}

struct PublisherWorker {
    timeline: Timeline,
    shared: Arc<Shared>,
    errors: ErrorLog,
    /// Written into every payload, with the sequence number.
    index: u32,
    topic: ByteString,
    qos: QoS,
    payload: usize,
    window: u64,
    interval: Option<Duration>,
    first_due: Instant,
    count: u64,
}

struct Published {
    /// The publisher's index (tasks finish in any order).
    index: u32,
    sent_window: u64,
    sent_total: u64,
    acked: u64,
    refused: u64,
    /// Sequence numbers the broker acknowledged without an error reason.
    acked_seqs: SeqSet,
    stopped_at: Instant,
}

/// A publisher's acknowledgement bookkeeping: which sequence number each
/// in-flight packet id carries, and which were acknowledged.
#[derive(Default)]
struct Acks {
    outstanding: u64,
    acked: u64,
    /// Acknowledgements with an error reason (e.g. 0x97 quota exceeded).
    refused: u64,
    in_flight: HashMap<u16, u32>,
    acked_seqs: SeqSet,
}

impl PublisherWorker {
    async fn run(self, mut conn: Connection) -> Published {
        let tl = self.timeline;
        let acks = self.qos != QoS::AtMostOnce;
        let mut next_due = self.first_due;
        let mut ack = Acks::default();
        let mut sent_total = 0u64;
        let mut sent_window = 0u64;
        let mut reported_sent = 0u64;
        let mut reported_acked = 0u64;
        let mut failed = false;
        let end_timer = tokio::time::sleep_until(tl.end);
        tokio::pin!(end_timer);

        'run: loop {
            let now = Instant::now();
            if now >= tl.end || sent_total >= self.count {
                break;
            }
            let mut budget = BATCH;
            while budget > 0
                && sent_total < self.count
                && (!acks || ack.outstanding < self.window)
                && conn.write_backlog() < WRITE_BACKLOG
            {
                if let Some(interval) = self.interval {
                    if next_due > now {
                        break;
                    }
                    next_due += interval;
                }
                let at = Instant::now();
                let seq = u32::try_from(sent_total).unwrap_or(u32::MAX);
                let publish = Publish {
                    qos: self.qos,
                    topic: self.topic.clone(),
                    payload: payload(tl.base, at, self.payload, self.index, seq),
                    ..Publish::default()
                };
                let packet_id = match conn.publish(publish) {
                    Ok(id) => id,
                    Err(e) => {
                        self.errors.record(&self.shared, format!("publish: {e}"));
                        failed = true;
                        break 'run;
                    }
                };
                sent_total += 1;
                if at >= tl.warmup_end && at < tl.end {
                    sent_window += 1;
                }
                if acks {
                    ack.outstanding += 1;
                    ack.in_flight.insert(packet_id, seq);
                }
                budget -= 1;
            }
            Shared::add(&self.shared.sent, sent_total - reported_sent);
            reported_sent = sent_total;

            let more = sent_total < self.count && (!acks || ack.outstanding < self.window);
            let paced = self.interval.is_some() && more;
            tokio::select! {
                driven = conn.drive() => {
                    if let Err(e) = driven {
                        self.errors.record(&self.shared, format!("publisher connection: {e}"));
                        failed = true;
                        break 'run;
                    }
                }
                () = tokio::time::sleep_until(next_due), if paced => {}
                () = &mut end_timer => {}
            }
            if let Err(e) = self.take_acks(&mut conn, &mut ack) {
                self.errors.record(&self.shared, e);
                failed = true;
                break 'run;
            }
            Shared::add(&self.shared.acked, ack.acked - reported_acked);
            reported_acked = ack.acked;
        }
        let stopped_at = Instant::now().min(tl.end);
        Shared::add(&self.shared.sent, sent_total - reported_sent);
        self.shared
            .publishers_stopped
            .fetch_add(1, Ordering::Release);

        // Drain: wait for the outstanding acknowledgements, then leave.
        if !failed {
            let deadline = Instant::now() + tl.drain;
            let drained = tokio::time::timeout_at(deadline, async {
                while ack.outstanding > 0 || conn.write_backlog() > 0 {
                    conn.drive().await.map_err(|e| e.to_string())?;
                    self.take_acks(&mut conn, &mut ack)?;
                }
                Ok::<(), String>(())
            })
            .await;
            match drained {
                Ok(Ok(())) => {}
                Ok(Err(e)) => self
                    .errors
                    .record(&self.shared, format!("publisher drain: {e}")),
                // Acknowledgements that never came are errors; bytes the
                // broker did not read in time (QoS 0 flat out) show up as
                // missing deliveries instead.
                Err(_) if ack.outstanding > 0 => self.errors.record(
                    &self.shared,
                    format!(
                        "{} publishes unacknowledged after the drain",
                        ack.outstanding
                    ),
                ),
                Err(_) => {}
            }
            Shared::add(&self.shared.acked, ack.acked - reported_acked);
            if let Ok(Err(e)) =
                tokio::time::timeout(Duration::from_secs(5), conn.disconnect()).await
            {
                tracing::debug!(error = %e, "publisher disconnect");
            }
        }
        Published {
            index: self.index,
            sent_window,
            sent_total,
            acked: ack.acked,
            refused: ack.refused,
            acked_seqs: ack.acked_seqs,
            stopped_at,
        }
    }

    fn take_acks(&self, conn: &mut Connection, ack: &mut Acks) -> Result<(), String> {
        while let Some(event) = conn.poll_event() {
            if let Event::Disconnected { reason } = event {
                return Err(format!("publisher disconnected: {reason}"));
            }
            if let Some((packet_id, reason_code)) = event.completed_publish() {
                ack.outstanding = ack.outstanding.saturating_sub(1);
                ack.acked += 1;
                let seq = ack.in_flight.remove(&packet_id);
                if reason_code.is_error() {
                    // A refusal is not a promise to deliver.
                    ack.refused += 1;
                    self.errors
                        .record(&self.shared, format!("publish rejected: {reason_code}"));
                } else if let Some(seq) = seq {
                    ack.acked_seqs.insert(seq);
                }
            }
        }
        Ok(())
    }
}

struct SubscriberWorker {
    index: usize,
    shared: Arc<Shared>,
    errors: ErrorLog,
    fanout: u64,
    publishers: u64,
}

struct Received {
    /// The subscriber's index.
    index: usize,
    received_window: u64,
    received_total: u64,
    hist: Histogram<u64>,
    /// Which messages arrived, and whether the connection lasted.
    outcome: SubscriberOutcome,
}

impl SubscriberWorker {
    async fn run(self, mut conn: Connection, tl: Timeline, mut hist: Histogram<u64>) -> Received {
        let mut received_total = 0u64;
        let mut received_window = 0u64;
        let mut seen = Seen::default();
        let mut disconnected = false;
        let mut last_activity = Instant::now();
        let mut publishing_done_seen = false;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let hard_stop = tl.end + tl.drain;
        loop {
            let now = Instant::now();
            if now >= hard_stop {
                break;
            }
            if self.shared.publishers_stopped.load(Ordering::Acquire) >= self.publishers {
                if !publishing_done_seen {
                    publishing_done_seen = true;
                    last_activity = last_activity.max(now);
                }
                let expected = Shared::get(&self.shared.sent).saturating_mul(self.fanout);
                if Shared::get(&self.shared.received) >= expected
                    || now.saturating_duration_since(last_activity) >= IDLE_AFTER_PUBLISHING
                {
                    break;
                }
            }
            tokio::select! {
                driven = conn.drive() => {
                    if let Err(e) = driven {
                        self.errors.record(&self.shared, format!("subscriber connection: {e}"));
                        disconnected = true;
                        break;
                    }
                }
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            let mut batch = 0u64;
            while let Some(event) = conn.poll_event() {
                let message = match event {
                    Event::Message(message) => message,
                    Event::Disconnected { reason } => {
                        self.errors
                            .record(&self.shared, format!("subscriber disconnected: {reason}"));
                        disconnected = true;
                        continue;
                    }
                    _ => continue,
                };
                batch += 1;
                match message_id(&message.payload) {
                    Some((publisher, seq)) => {
                        seen.record(publisher, seq);
                    }
                    None => self
                        .errors
                        .record(&self.shared, "payload without a message id".to_string()),
                }
                if now >= tl.warmup_end && now < tl.end {
                    received_window += 1;
                }
                match sent_at(tl.base, &message.payload) {
                    Some(sent) if sent >= tl.warmup_end && sent < tl.end => {
                        record_latency(&mut hist, now.saturating_duration_since(sent));
                    }
                    Some(_) => {}
                    None => self
                        .errors
                        .record(&self.shared, "payload without a timestamp".to_string()),
                }
            }
            if batch > 0 {
                received_total += batch;
                last_activity = now;
                Shared::add(&self.shared.received, batch);
            }
            if disconnected {
                break;
            }
        }
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), conn.disconnect()).await {
            tracing::debug!(error = %e, "subscriber disconnect");
        }
        Received {
            index: self.index,
            received_window,
            received_total,
            hist,
            outcome: SubscriberOutcome { seen, disconnected },
        }
    }
}

/// A dedicated multi-thread runtime for subscribers. Shut down without
/// blocking when dropped (dropping a runtime inside async code would panic).
struct SubscriberRuntime(Option<tokio::runtime::Runtime>);

impl SubscriberRuntime {
    fn new(threads: usize) -> Result<SubscriberRuntime, BenchError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("bench-subscriber")
            .enable_all()
            .build()?;
        Ok(SubscriberRuntime(Some(runtime)))
    }

    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(runtime) => runtime.handle().clone(),
            None => tokio::runtime::Handle::current(),
        }
    }
}

impl Drop for SubscriberRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_carries_its_send_time() {
        let base = Instant::now();
        let at = base + Duration::from_micros(1234);
        let p = payload(base, at, 64, 3, 77);
        assert_eq!(p.len(), 64);
        assert_eq!(sent_at(base, &p), Some(at));
        assert_eq!(sent_at(base, &p[..7]), None);
        assert_eq!(message_id(&p), Some((3, 77)));
        assert_eq!(message_id(&p[..15]), None);
    }
}

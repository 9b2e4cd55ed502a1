//! MQTT ingest: the messages of a `data.mqtt` file (`device<TAB>values<TAB>json`
//! lines) published to `devices/{device}/telemetry` with QoS 1 over C
//! connections, each keeping up to W PUBLISHes unacknowledged (W is also
//! bounded by the broker's Receive Maximum). A device's messages all go
//! through one connection, in file order.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clap::Args;
use mqtt_client::{ConnectOptions, Connection, Event};
use mqtt_proto::{decode, encode, Ack, ByteString, ConnAck, Packet, Protocol, Publish, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::IngestCommon;
use crate::args::resolve_target;
use crate::BenchError;

/// Queue publishes until this many bytes wait for the socket.
const WRITE_BACKLOG: usize = 256 * 1024;
/// Publishes queued per turn at most (then the task drives its socket).
const BATCH: usize = 256;
/// How long the acknowledgements of what was sent are waited for.
const DRAIN: Duration = Duration::from_secs(60);
/// The largest packet the null server accepts.
const NULL_SERVER_MAX_PACKET: usize = 16 * 1024 * 1024;

/// `mqtt_load`: MQTT 5 QoS 1 telemetry publisher.
#[derive(Debug, Clone, Args)]
pub struct MqttLoadArgs {
    /// The broker, `host:port`.
    #[arg(long, required_unless_present = "null_server")]
    pub addr: Option<String>,
    /// Connections; each device's messages go through one of them.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Unacknowledged PUBLISHes per connection at most (1 to 65,000).
    #[arg(long, default_value_t = 1000)]
    pub window: usize,
    #[command(flatten)]
    pub common: IngestCommon,
}

/// One message of the file.
struct Message {
    topic: ByteString,
    payload: Bytes,
    /// Metric values in the message (the file's second column).
    values: u32,
}

/// What one connection achieved.
#[derive(Debug, Default)]
struct ConnReport {
    ok_msgs: usize,
    ok_values: u64,
    failed_msgs: usize,
    sent: usize,
    reasons: BTreeMap<u8, usize>,
    error: Option<String>,
    receive_maximum: u16,
    deadline_hit: bool,
}

/// Publishes the file as `args` say and returns the report.
pub async fn run(args: &MqttLoadArgs) -> Result<serde_json::Value, BenchError> {
    let target = args
        .addr
        .as_deref()
        .ok_or_else(|| BenchError::InvalidArgs("--addr is required".into()))?;
    let addr = resolve_target(target).await?;
    let (file_name, data) = args.common.read_file()?;
    let window = args.window.clamp(1, 65_000);
    let plans = plan(Bytes::from(data), args.connections.max(1))?;
    let file_msgs: usize = plans.iter().map(Vec::len).sum();
    let file_values: u64 = plans.iter().flatten().map(|m| u64::from(m.values)).sum();

    let pid = std::process::id();
    let mut conns = Vec::with_capacity(plans.len());
    for index in 0..plans.len() {
        let options = ConnectOptions::new(format!("mwload-{pid}-{index}"))
            .protocol(Protocol::V5)
            .keep_alive(120)
            .max_inflight(u16::try_from(window).unwrap_or(u16::MAX));
        let (conn, connack) =
            Connection::connect(addr, options)
                .await
                .map_err(|source| BenchError::Client {
                    role: "connection",
                    index,
                    source,
                })?;
        conns.push((conn, connack.properties.receive_maximum.unwrap_or(u16::MAX)));
    }

    let started = Instant::now();
    let deadline = started + args.common.deadline();
    let mut tasks = JoinSet::new();
    for ((conn, receive_maximum), messages) in conns.into_iter().zip(plans) {
        tasks.spawn(publish_all(
            conn,
            receive_maximum,
            messages,
            window,
            deadline,
        ));
    }
    let mut reports = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        reports.push(joined.unwrap_or_else(|e| ConnReport {
            error: Some(format!("connection task failed: {e}")),
            ..ConnReport::default()
        }));
    }
    let secs = started.elapsed().as_secs_f64();

    let ok_msgs: usize = reports.iter().map(|r| r.ok_msgs).sum();
    let ok_values: u64 = reports.iter().map(|r| r.ok_values).sum();
    let mut reasons = BTreeMap::<String, usize>::new();
    for (code, n) in reports.iter().flat_map(|r| &r.reasons) {
        *reasons.entry(format!("{code:#04x}")).or_default() += n;
    }
    let errors: Vec<&String> = reports.iter().filter_map(|r| r.error.as_ref()).collect();
    Ok(serde_json::json!({
        "label": args.common.label,
        "addr": target,
        "file": file_name,
        "connections": reports.len(),
        "window": window,
        "receive_maximum": reports.iter().map(|r| r.receive_maximum).min(),
        "file_messages": file_msgs,
        "file_values": file_values,
        "sent_messages": reports.iter().map(|r| r.sent).sum::<usize>(),
        "ok_messages": ok_msgs,
        "ok_values": ok_values,
        "failed_messages": reports.iter().map(|r| r.failed_msgs).sum::<usize>(),
        "puback_reasons": reasons,
        "deadline_hit": reports.iter().any(|r| r.deadline_hit),
        "seconds": secs,
        "messages_per_s": ok_msgs as f64 / secs,
        "values_per_s": ok_values as f64 / secs,
        "errors": errors,
    }))
}

/// Splits the file into one list of messages per connection; a device's
/// messages all go to the connection it was first given (round robin).
fn plan(file: Bytes, conns: usize) -> Result<Vec<Vec<Message>>, BenchError> {
    let mut plans: Vec<Vec<Message>> = (0..conns).map(|_| Vec::new()).collect();
    let mut devices: HashMap<&[u8], (usize, ByteString)> = HashMap::new();
    let mut start = 0;
    while start < file.len() {
        let end = file[start..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(file.len(), |i| start + i);
        let line = &file[start..end];
        let line_start = start;
        start = end + 1;
        if line.is_empty() {
            continue;
        }
        let bad = || BenchError::Data("bad line in the MQTT data file".into());
        let mut parts = line.splitn(3, |b| *b == b'\t');
        let (Some(device), Some(values), Some(json)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let values: u32 = std::str::from_utf8(values)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(bad)?;
        let next = devices.len() % conns;
        let (conn, topic) = match devices.get(device) {
            Some(known) => known.clone(),
            None => {
                let name = std::str::from_utf8(device).map_err(|_| bad())?;
                let known = (next, ByteString::from(format!("devices/{name}/telemetry")));
                devices.insert(device, known.clone());
                known
            }
        };
        let json_start = line_start + (line.len() - json.len());
        plans[conn].push(Message {
            topic,
            payload: file.slice(json_start..end),
            values,
        });
    }
    Ok(plans)
}

/// One connection's run: publish its messages within the window until the
/// deadline, then wait (bounded) for the acknowledgements of what was sent.
async fn publish_all(
    mut conn: Connection,
    receive_maximum: u16,
    messages: Vec<Message>,
    window: usize,
    deadline: Instant,
) -> ConnReport {
    let window = window.min(usize::from(receive_maximum)).max(1);
    let mut report = ConnReport {
        receive_maximum,
        ..ConnReport::default()
    };
    // Packet id -> index of the message.
    let mut in_flight: HashMap<u16, usize> = HashMap::with_capacity(window);
    let stop = tokio::time::sleep_until(deadline);
    tokio::pin!(stop);
    while report.sent < messages.len() {
        if Instant::now() >= deadline {
            report.deadline_hit = true;
            break;
        }
        let mut budget = BATCH;
        while report.sent < messages.len()
            && in_flight.len() < window
            && conn.write_backlog() < WRITE_BACKLOG
            && budget > 0
        {
            let message = &messages[report.sent];
            let publish = Publish {
                qos: QoS::AtLeastOnce,
                topic: message.topic.clone(),
                payload: message.payload.clone(),
                ..Publish::default()
            };
            match conn.publish(publish) {
                Ok(packet_id) => in_flight.insert(packet_id, report.sent),
                Err(e) => {
                    report.error = Some(format!("publish: {e}"));
                    return report;
                }
            };
            report.sent += 1;
            budget -= 1;
        }
        tokio::select! {
            driven = conn.drive() => {
                if let Err(e) = driven {
                    report.error = Some(format!("connection: {e}"));
                    return report;
                }
            }
            () = &mut stop => {}
        }
        if let Err(e) = take_acks(&mut conn, &mut in_flight, &messages, &mut report) {
            report.error = Some(e);
            return report;
        }
    }
    let drained = tokio::time::timeout(DRAIN, async {
        while !in_flight.is_empty() || conn.write_backlog() > 0 {
            conn.drive().await.map_err(|e| format!("connection: {e}"))?;
            take_acks(&mut conn, &mut in_flight, &messages, &mut report)?;
        }
        Ok::<(), String>(())
    })
    .await;
    match drained {
        Ok(Ok(())) => {
            if let Ok(Err(e)) =
                tokio::time::timeout(Duration::from_secs(5), conn.disconnect()).await
            {
                tracing::debug!(error = %e, "disconnect");
            }
        }
        Ok(Err(e)) => report.error = Some(e),
        Err(_) => report.error = Some(format!("{} PUBACKs missing", in_flight.len())),
    }
    report
}

/// Counts the acknowledgements that arrived.
fn take_acks(
    conn: &mut Connection,
    in_flight: &mut HashMap<u16, usize>,
    messages: &[Message],
    report: &mut ConnReport,
) -> Result<(), String> {
    while let Some(event) = conn.poll_event() {
        if let Event::Disconnected { reason } = event {
            return Err(format!("connection ended: {reason}"));
        }
        let Some((packet_id, reason_code)) = event.completed_publish() else {
            continue;
        };
        let Some(index) = in_flight.remove(&packet_id) else {
            continue;
        };
        if reason_code.is_error() {
            report.failed_msgs += 1;
        } else {
            report.ok_msgs += 1;
            report.ok_values += u64::from(messages[index].values);
        }
        *report.reasons.entry(reason_code.0).or_default() += 1;
    }
    Ok(())
}

/// Serves MQTT on `listener` until killed: accepts every connection and
/// acknowledges every publish without storing anything.
pub async fn null_server(listener: TcpListener) -> Result<(), BenchError> {
    loop {
        let (stream, peer) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = acknowledge_all(stream).await {
                tracing::debug!(%peer, error = %e, "null server connection");
            }
        });
    }
}

/// One null-server connection: CONNACK, PUBACK (PUBREC/PUBCOMP for QoS 2),
/// PINGRESP; ends at DISCONNECT or EOF.
async fn acknowledge_all(mut stream: TcpStream) -> Result<(), BenchError> {
    stream.set_nodelay(true)?;
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut wbuf = BytesMut::new();
    let mut protocol = Protocol::V5;
    let codec = |e: &dyn std::fmt::Display| BenchError::Codec(e.to_string());
    loop {
        if stream.read_buf(&mut rbuf).await? == 0 {
            return Ok(());
        }
        while let Some(packet) =
            decode(&mut rbuf, protocol, NULL_SERVER_MAX_PACKET).map_err(|e| codec(&e))?
        {
            let reply = match packet {
                Packet::Connect(connect) => {
                    protocol = connect.protocol;
                    Packet::ConnAck(ConnAck::default())
                }
                Packet::Publish(p) if p.qos == QoS::AtLeastOnce => {
                    Packet::PubAck(Ack::new(p.packet_id))
                }
                Packet::Publish(p) if p.qos == QoS::ExactlyOnce => {
                    Packet::PubRec(Ack::new(p.packet_id))
                }
                Packet::PubRel(rel) => Packet::PubComp(Ack::new(rel.packet_id)),
                Packet::PingReq => Packet::PingResp,
                Packet::Disconnect(_) => return Ok(()),
                _ => continue,
            };
            encode(&reply, protocol, &mut wbuf).map_err(|e| codec(&e))?;
        }
        if !wbuf.is_empty() {
            stream.write_all(&wbuf).await?;
            wbuf.clear();
        }
    }
}

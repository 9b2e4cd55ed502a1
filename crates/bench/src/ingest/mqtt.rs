//! MQTT ingest: the messages of a `data.mqtt` file (`device<TAB>values<TAB>json`
//! lines) published with QoS 1 by the devices themselves, as a deployment
//! sees them: one connection per device of the file, client id = user name
//! = the device's id, password = its token (from `--credentials`), each
//! publishing only its own lines, to `devices/{device}/telemetry`, in file
//! order. The total window W of unacknowledged PUBLISHes is shared out
//! evenly: each connection keeps up to ceil(W / devices) in flight (also
//! bounded by the broker's Receive Maximum).
//!
//! A PUBACK with a reason code below 0x80 counts as stored; one at 0x80 or
//! above as refused (the report keeps them apart; see [`check`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
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
/// CONNECTs (credential checks) under way at once before the clock starts.
const CONNECTS_AT_ONCE: usize = 16;
/// Devices named in an error message at most.
const NAMED: usize = 5;

/// `mqtt_load`: MQTT 5 QoS 1 telemetry publisher, one connection per device.
#[derive(Debug, Clone, Args)]
pub struct MqttLoadArgs {
    /// The broker, `host:port`.
    #[arg(long, required_unless_present = "null_server")]
    pub addr: Option<String>,
    /// The devices' tokens: one `DEVICE_ID TOKEN` line per device (blank
    /// lines and `#` comments skipped), or JSON: the answer of
    /// `POST /api/devices/import?tokens=true` (`{"tokens": [{"id", "token"}]}`)
    /// or such an array alone. Each device of the file connects with client
    /// id = user name = DEVICE_ID and password = TOKEN; a device of the
    /// file without a token is an error.
    #[arg(long, required_unless_present = "null_server")]
    pub credentials: Option<PathBuf>,
    /// Unacknowledged PUBLISHes in total at most, shared evenly by the
    /// devices' connections (each gets ceil(window / devices), 1 to
    /// 65,000, and no more than the broker's Receive Maximum).
    #[arg(long, default_value_t = 8000)]
    pub window: usize,
    #[command(flatten)]
    pub common: IngestCommon,
}

/// One message of the file.
struct Message {
    payload: Bytes,
    /// Metric values in the message (the file's second column).
    values: u32,
}

/// One device's messages, in file order.
struct DevicePlan {
    device: String,
    topic: ByteString,
    messages: Vec<Message>,
}

/// What one connection achieved.
#[derive(Debug, Default)]
struct ConnReport {
    ok_msgs: usize,
    ok_values: u64,
    refused_msgs: usize,
    /// When the first refusal arrived and its reason code.
    first_refusal: Option<(Instant, u8)>,
    sent: usize,
    reasons: BTreeMap<u8, usize>,
    error: Option<String>,
    receive_maximum: u16,
    deadline_hit: bool,
}

/// Reads a credentials file (the formats `--credentials` describes) into
/// device id -> token.
pub fn read_credentials(path: &Path) -> Result<HashMap<String, String>, BenchError> {
    let bad =
        |why: String| BenchError::InvalidArgs(format!("--credentials {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let mut pairs = Vec::new();
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let doc: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let items = match &doc {
            serde_json::Value::Array(items) => items,
            serde_json::Value::Object(m) => match m.get("tokens") {
                Some(serde_json::Value::Array(items)) => items,
                _ => return Err(bad("a JSON object needs a \"tokens\" array".into())),
            },
            _ => return Err(bad("expected an array or {\"tokens\": [...]}".into())),
        };
        for (i, item) in items.iter().enumerate() {
            let field = |k: &str| item.get(k).and_then(serde_json::Value::as_str);
            let (Some(id), Some(token)) = (field("id"), field("token")) else {
                return Err(bad(format!("item {i}: needs string \"id\" and \"token\"")));
            };
            pairs.push((id.to_string(), token.to_string()));
        }
    } else {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(id), Some(token), None) = (words.next(), words.next(), words.next()) else {
                return Err(bad(format!("line {}: expected `DEVICE_ID TOKEN`", n + 1)));
            };
            pairs.push((id.to_string(), token.to_string()));
        }
    }
    let mut tokens = HashMap::with_capacity(pairs.len());
    for (id, token) in pairs {
        if tokens.contains_key(&id) {
            return Err(bad(format!("device {id} is listed twice")));
        }
        tokens.insert(id, token);
    }
    Ok(tokens)
}

/// Publishes the file as `args` say and returns the report (whatever the
/// PUBACKs said: see [`check`] for whether the run is valid).
pub async fn run(args: &MqttLoadArgs) -> Result<serde_json::Value, BenchError> {
    let target = args
        .addr
        .as_deref()
        .ok_or_else(|| BenchError::InvalidArgs("--addr is required".into()))?;
    let cred_path = args
        .credentials
        .as_deref()
        .ok_or_else(|| BenchError::InvalidArgs("--credentials is required".into()))?;
    let tokens = read_credentials(cred_path)?;
    let addr = resolve_target(target).await?;
    let (file_name, data) = args.common.read_file()?;
    let plans = plan(Bytes::from(data))?;
    if plans.is_empty() {
        return Err(BenchError::Data(format!("{file_name}: no messages")));
    }
    let missing: Vec<&str> = plans
        .iter()
        .map(|p| p.device.as_str())
        .filter(|d| !tokens.contains_key(*d))
        .collect();
    if !missing.is_empty() {
        return Err(BenchError::InvalidArgs(format!(
            "{} device(s) of {file_name} have no token in {}: {}",
            missing.len(),
            cred_path.display(),
            missing[..missing.len().min(NAMED)].join(", ")
        )));
    }
    let total_window = args.window.max(1);
    let window = total_window.div_ceil(plans.len()).clamp(1, 65_000);
    let file_msgs: usize = plans.iter().map(|p| p.messages.len()).sum();
    let file_values: u64 = plans
        .iter()
        .flat_map(|p| &p.messages)
        .map(|m| u64::from(m.values))
        .sum();

    // Connect every device before the clock starts, a few at a time.
    let mut conns = Vec::with_capacity(plans.len());
    for group in plans.chunks(CONNECTS_AT_ONCE) {
        let mut connecting = JoinSet::new();
        for (i, p) in group.iter().enumerate() {
            let device = p.device.clone();
            let token = tokens.get(&device).cloned().unwrap_or_default();
            let options = ConnectOptions::new(device.clone())
                .protocol(Protocol::V5)
                .keep_alive(120)
                .credentials(device.clone(), Bytes::from(token))
                .max_inflight(u16::try_from(window).unwrap_or(u16::MAX));
            connecting.spawn(async move {
                let outcome = Connection::connect(addr, options).await;
                (i, device, outcome)
            });
        }
        let mut done: Vec<Option<(Connection, u16)>> = (0..group.len()).map(|_| None).collect();
        while let Some(joined) = connecting.join_next().await {
            let (i, device, outcome) = joined.map_err(|e| BenchError::Task(e.to_string()))?;
            let (conn, connack) =
                outcome.map_err(|source| BenchError::DeviceConnect { device, source })?;
            done[i] = Some((conn, connack.properties.receive_maximum.unwrap_or(u16::MAX)));
        }
        conns.extend(done.into_iter().flatten());
    }

    let started = Instant::now();
    let deadline = started + args.common.deadline();
    let mut tasks = JoinSet::new();
    let devices: Vec<String> = plans.iter().map(|p| p.device.clone()).collect();
    for (index, ((conn, receive_maximum), p)) in conns.into_iter().zip(plans).enumerate() {
        tasks.spawn(async move {
            let report =
                publish_all(conn, receive_maximum, p.topic, p.messages, window, deadline).await;
            (index, report)
        });
    }
    let mut reports: Vec<(usize, ConnReport)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(done) => reports.push(done),
            Err(e) => reports.push((
                usize::MAX,
                ConnReport {
                    error: Some(format!("connection task failed: {e}")),
                    ..ConnReport::default()
                },
            )),
        }
    }
    let secs = started.elapsed().as_secs_f64();

    let device_of = |index: usize| devices.get(index).map_or("?", String::as_str);
    let ok_msgs: usize = reports.iter().map(|(_, r)| r.ok_msgs).sum();
    let ok_values: u64 = reports.iter().map(|(_, r)| r.ok_values).sum();
    let refused: usize = reports.iter().map(|(_, r)| r.refused_msgs).sum();
    let sent: usize = reports.iter().map(|(_, r)| r.sent).sum();
    let first_refused = reports
        .iter()
        .filter_map(|(i, r)| r.first_refusal.map(|(at, code)| (at, code, *i)))
        .min_by_key(|(at, _, _)| *at)
        .map(|(_, code, i)| {
            serde_json::json!({"device": device_of(i), "reason": format!("{code:#04x}")})
        });
    let mut reasons = BTreeMap::<String, usize>::new();
    for (code, n) in reports.iter().flat_map(|(_, r)| &r.reasons) {
        *reasons.entry(format!("{code:#04x}")).or_default() += n;
    }
    let errors: Vec<String> = reports
        .iter()
        .filter_map(|(i, r)| r.error.as_ref().map(|e| format!("{}: {e}", device_of(*i))))
        .collect();
    Ok(serde_json::json!({
        "label": args.common.label,
        "addr": target,
        "file": file_name,
        "credentials": cred_path.display().to_string(),
        "devices": reports.len(),
        "connections": reports.len(),
        "window": total_window,
        "window_per_connection": window,
        "receive_maximum": reports.iter().map(|(_, r)| r.receive_maximum).min(),
        "file_messages": file_msgs,
        "file_values": file_values,
        "sent_messages": sent,
        "ok_messages": ok_msgs,
        "ok_values": ok_values,
        "refused": refused,
        "first_refused": first_refused,
        "unacknowledged": sent.saturating_sub(ok_msgs + refused),
        "puback_reasons": reasons,
        "deadline_hit": reports.iter().any(|(_, r)| r.deadline_hit),
        "seconds": secs,
        "messages_per_s": ok_msgs as f64 / secs,
        "values_per_s": ok_values as f64 / secs,
        "errors": errors,
    }))
}

/// Whether a report of [`run`] describes a valid run: no message refused
/// (a PUBACK reason code of 0x80 or above) and no connection error or
/// missing acknowledgement. Messages left unsent at the deadline are not an
/// error (the rate counts what was acknowledged).
pub fn check(report: &serde_json::Value) -> Result<(), BenchError> {
    let refused = report["refused"].as_u64().unwrap_or(0);
    if refused > 0 {
        let first = &report["first_refused"];
        return Err(BenchError::Refused {
            count: refused,
            reason: first["reason"].as_str().unwrap_or("?").to_string(),
            device: first["device"].as_str().unwrap_or("?").to_string(),
        });
    }
    let errors = report["errors"].as_array().map_or(0, Vec::len);
    if errors > 0 {
        return Err(BenchError::Task(format!(
            "{errors} connection(s) failed, first: {}",
            report["errors"][0].as_str().unwrap_or("?")
        )));
    }
    Ok(())
}

/// Splits the file into one list of messages per device, devices in order
/// of first appearance.
fn plan(file: Bytes) -> Result<Vec<DevicePlan>, BenchError> {
    let mut plans: Vec<DevicePlan> = Vec::new();
    let mut devices: HashMap<Bytes, usize> = HashMap::new();
    let mut start = 0;
    let mut line_no = 0;
    while start < file.len() {
        let end = file[start..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(file.len(), |i| start + i);
        let line = &file[start..end];
        let line_start = start;
        start = end + 1;
        line_no += 1;
        if line.is_empty() {
            continue;
        }
        let bad = || {
            BenchError::Data(format!(
                "line {line_no} of the MQTT data file: not device<TAB>values<TAB>json"
            ))
        };
        let mut parts = line.splitn(3, |b| *b == b'\t');
        let (Some(device), Some(values), Some(json)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let values: u32 = std::str::from_utf8(values)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(bad)?;
        let index = match devices.get(device) {
            Some(index) => *index,
            None => {
                let name = std::str::from_utf8(device).map_err(|_| bad())?;
                if name.is_empty() || name.contains(['/', '+', '#']) {
                    return Err(bad());
                }
                plans.push(DevicePlan {
                    device: name.to_string(),
                    topic: ByteString::from(format!("devices/{name}/telemetry")),
                    messages: Vec::new(),
                });
                devices.insert(
                    file.slice(line_start..line_start + device.len()),
                    plans.len() - 1,
                );
                plans.len() - 1
            }
        };
        let json_start = line_start + (line.len() - json.len());
        plans[index].messages.push(Message {
            payload: file.slice(json_start..end),
            values,
        });
    }
    Ok(plans)
}

/// One connection's run: publish its device's messages within the window
/// until the deadline, then wait (bounded) for the acknowledgements of what
/// was sent.
async fn publish_all(
    mut conn: Connection,
    receive_maximum: u16,
    topic: ByteString,
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
                topic: topic.clone(),
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
            report.refused_msgs += 1;
            if report.first_refusal.is_none() {
                report.first_refusal = Some((Instant::now(), reason_code.0));
            }
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

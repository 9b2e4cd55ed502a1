//! `GET /api/stream`: Server-Sent Events of telemetry, presence, alarm and
//! twin changes, fed by the broker through [`StreamSource`].
//!
//! Back-pressure: each client has a bounded queue ([`StreamSink`], the
//! capacity is [`ApiState::stream_queue`]). The broker offers messages
//! without waiting; when the queue is full the sink closes for good, the
//! client gets whatever was queued cut short by a final `event: overflow`,
//! and the stream ends. Nothing is ever buffered without bound.

use std::collections::HashSet;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::Frame;
use iot_types::device_topics::{self, DeviceTopic, TwinTopic};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::params::Params;
use crate::render::JsonValue;
use crate::ApiState;

/// How often an idle stream sends a comment line, so that proxies and
/// clients see it is alive.
pub const STREAM_KEEPALIVE: Duration = Duration::from_secs(15);

/// Streams ended because their client was too slow, since start.
static OVERFLOWS: AtomicU64 = AtomicU64::new(0);

/// How many live streams were ended because their client read too slowly
/// (their queue filled up), since the process started.
pub fn stream_overflows() -> u64 {
    OVERFLOWS.load(Ordering::Relaxed)
}

/// One MQTT message offered to a stream.
#[derive(Clone, Debug)]
pub struct StreamMessage {
    /// The topic it was published on.
    pub topic: String,
    /// Its payload.
    pub payload: Bytes,
}

/// Where the broker delivers a stream's messages: a bounded queue owned by
/// one HTTP client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StreamSink {
    tx: mpsc::Sender<StreamMessage>,
    overflowed: Arc<AtomicBool>,
}

impl StreamSink {
    /// A sink with room for `capacity` messages (at least 1), and the
    /// receiving end.
    fn channel(capacity: usize) -> (StreamSink, mpsc::Receiver<StreamMessage>, Arc<AtomicBool>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let overflowed = Arc::new(AtomicBool::new(false));
        (
            StreamSink {
                tx,
                overflowed: overflowed.clone(),
            },
            rx,
            overflowed,
        )
    }

    /// Queues a message without waiting. Returns `false` when the stream is
    /// gone: its client disconnected, or read too slowly and its queue
    /// filled up (the stream then ends with `event: overflow`). Once it
    /// returned `false` it always will: the source should drop this sink.
    pub fn offer(&self, topic: &str, payload: Bytes) -> bool {
        if self.overflowed.load(Ordering::Relaxed) {
            return false;
        }
        let msg = StreamMessage {
            topic: topic.to_owned(),
            payload,
        };
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.overflowed.swap(true, Ordering::Relaxed) {
                    OVERFLOWS.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("live stream client too slow: queue full, stream ended");
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Whether the stream is gone (client disconnected or overflowed).
    pub fn is_closed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed) || self.tx.is_closed()
    }
}

/// Unsubscribes when dropped.
pub type StreamGuard = Box<dyn Send + Sync>;

/// The broker as seen by live streams, implemented by the binary.
pub trait StreamSource: Send + Sync + 'static {
    /// Taps every message published on a topic matching one of `filters`
    /// (MQTT filters with `+` and `#`; `$events/...` filters included) into
    /// `sink` until the returned guard is dropped. Must not block: offer
    /// with [`StreamSink::offer`] and stop (remove the tap) once it returns
    /// `false`. The stream ends when every clone of `sink` is dropped:
    /// drop them when the broker shuts down, or a graceful shutdown of the
    /// HTTP server waits for its stream clients to leave.
    fn subscribe(&self, filters: Vec<String>, sink: StreamSink) -> StreamGuard;
}

/// What a stream was asked for.
#[derive(Debug)]
struct Selection {
    /// `None`: every device.
    devices: Option<HashSet<String>>,
    /// `None`: every metric.
    metrics: Option<HashSet<String>>,
    telemetry: bool,
    presence: bool,
    alarms: bool,
    twins: bool,
}

fn list(v: &str) -> Option<HashSet<String>> {
    if v.trim() == "*" {
        return None;
    }
    Some(
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

impl Selection {
    fn parse(q: Option<&str>) -> Result<Selection, ApiError> {
        let params = Params::parse(q);
        params.only(&["devices", "metrics", "events"], &[])?;
        let devices = match params.get("devices") {
            None => None,
            Some(v) => list(v),
        };
        if let Some(bad) = devices
            .iter()
            .flatten()
            .find(|d| !device_topics::is_level(d) || d.contains('*'))
        {
            return Err(ApiError::param(
                "devices",
                format!("{bad:?} is not a device id (use * alone for every device)"),
            ));
        }
        if devices.as_ref().is_some_and(|d| d.is_empty()) {
            return Err(ApiError::param("devices", "list at least one device, or *"));
        }
        let metrics = params.get("metrics").and_then(list);
        let mut sel = Selection {
            devices,
            metrics,
            telemetry: true,
            presence: true,
            alarms: true,
            twins: true,
        };
        if let Some(events) = params.get("events") {
            sel.telemetry = false;
            sel.presence = false;
            sel.alarms = false;
            sel.twins = false;
            for e in events.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match e {
                    "telemetry" => sel.telemetry = true,
                    "presence" => sel.presence = true,
                    "alarms" | "alarm" => sel.alarms = true,
                    "twins" | "twin" => sel.twins = true,
                    other => {
                        return Err(ApiError::param(
                            "events",
                            format!("{other:?} is not one of telemetry, presence, alarms, twins"),
                        ))
                    }
                }
            }
            if !(sel.telemetry || sel.presence || sel.alarms || sel.twins) {
                return Err(ApiError::param("events", "name at least one event kind"));
            }
        }
        Ok(sel)
    }

    /// The MQTT filters to tap, sorted, each once.
    fn filters(&self) -> Vec<String> {
        let ids: Vec<String> = match &self.devices {
            None => vec!["+".into()],
            Some(d) => {
                let mut v: Vec<String> = d.iter().cloned().collect();
                v.sort();
                v
            }
        };
        let mut out = Vec::new();
        for id in &ids {
            if self.telemetry {
                out.push(device_topics::telemetry(id));
            }
            if self.presence {
                out.push(format!("$events/devices/{id}/#"));
            }
            if self.alarms {
                out.push(device_topics::alarm(id, "#"));
            }
            if self.twins {
                out.push(device_topics::twin(id, "", TwinTopic::Documents));
                out.push(device_topics::twin(id, "+", TwinTopic::Documents));
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn wants_device(&self, id: &str) -> bool {
        self.devices.as_ref().is_none_or(|d| d.contains(id))
    }

    /// The SSE text for one message, or nothing when it is not selected.
    fn render(&self, msg: &StreamMessage, namespace: &str, now: i64) -> String {
        let mut out = String::new();
        let Some(topic) = device_topics::parse(&msg.topic) else {
            return out;
        };
        if !topic.device().is_some_and(|id| self.wants_device(id)) {
            return out;
        }
        let event = match topic {
            DeviceTopic::Telemetry { device } if self.telemetry => {
                // A payload that does not parse was refused at ingest too.
                let Ok(points) = tsdb::parse_device_json(&msg.payload, namespace, device, now)
                else {
                    return out;
                };
                for p in points {
                    let metric = p.series.metric();
                    if self.metrics.as_ref().is_some_and(|m| !m.contains(metric)) {
                        continue;
                    }
                    let data = serde_json::json!({
                        "device": device,
                        "metric": metric,
                        "ts": p.ts,
                        "value": serde_json::to_value(JsonValue(&p.value)).unwrap_or_default(),
                    });
                    push_event(&mut out, "telemetry", &data.to_string());
                }
                return out;
            }
            DeviceTopic::Presence { .. } if self.presence => "presence",
            DeviceTopic::Alarm { .. } if self.alarms => "alarm",
            DeviceTopic::Twin {
                topic: TwinTopic::Documents,
                ..
            } if self.twins => "twin",
            _ => return out,
        };
        push_event(&mut out, event, &json_payload(&msg.topic, &msg.payload));
        out
    }
}

/// `{"topic", "payload"}` with the payload as JSON when it is JSON, else as
/// a string.
fn json_payload(topic: &str, payload: &[u8]) -> String {
    let payload = serde_json::from_slice::<serde_json::Value>(payload)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(payload).into()));
    serde_json::json!({ "topic": topic, "payload": payload }).to_string()
}

fn push_event(out: &mut String, event: &str, data: &str) {
    out.push_str("event: ");
    out.push_str(event);
    out.push('\n');
    // Serialized JSON holds no raw newline, so one data line suffices.
    out.push_str("data: ");
    out.push_str(data);
    out.push_str("\n\n");
}

/// `GET /api/stream?devices=&metrics=&events=`.
pub(crate) async fn stream(
    State(st): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let sel = Selection::parse(q.as_deref())?;
    let Some(source) = st.stream.clone() else {
        return Err(ApiError::Unavailable(
            "this server runs no broker: live streams are unavailable".into(),
        ));
    };
    let filters = sel.filters();
    let max_filters = st.guards.limits().max_stream_filters;
    if filters.len() > max_filters {
        st.guards
            .counters()
            .stream_filters_refused
            .fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::param(
            "devices",
            format!(
                "this selection taps {} topic filters (one per device and event kind, two for twins); \
                 a stream may tap at most {max_filters} (setting http.max_stream_filters): \
                 list fewer devices or event kinds, or use devices=*",
                filters.len()
            ),
        ));
    }
    // Given back when the response body (and with it the tap) is dropped.
    let slot = st.guards.stream_slot()?;
    let (sink, rx, overflowed) = StreamSink::channel(st.stream_queue);
    let tap = source.subscribe(filters, sink);
    let guard: StreamGuard = Box::new((tap, slot));
    let body = SseBody::new(
        rx,
        overflowed,
        sel,
        Arc::new(st.namespace.clone()),
        st.clock.clone(),
        st.stream_queue,
        STREAM_KEEPALIVE,
        guard,
    );
    let mut resp = (StatusCode::OK, Body::new(body)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// The response body: drains the client's queue, renders events, sends a
/// keep-alive comment when idle, and ends after an overflow.
struct SseBody {
    rx: mpsc::Receiver<StreamMessage>,
    overflowed: Arc<AtomicBool>,
    keepalive: tokio::time::Interval,
    sel: Selection,
    namespace: Arc<String>,
    clock: iot_types::SharedClock,
    queue: usize,
    first: bool,
    done: bool,
    _guard: StreamGuard,
}

impl SseBody {
    #[allow(clippy::too_many_arguments)]
    fn new(
        rx: mpsc::Receiver<StreamMessage>,
        overflowed: Arc<AtomicBool>,
        sel: Selection,
        namespace: Arc<String>,
        clock: iot_types::SharedClock,
        queue: usize,
        keepalive: Duration,
        guard: StreamGuard,
    ) -> SseBody {
        let first_tick = tokio::time::Instant::now() + keepalive;
        let mut keepalive = tokio::time::interval_at(first_tick, keepalive);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        SseBody {
            rx,
            overflowed,
            keepalive,
            sel,
            namespace,
            clock,
            queue,
            first: true,
            done: false,
            _guard: guard,
        }
    }
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.first {
            // So that the headers reach the client at once.
            this.first = false;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                b": connected\n\n",
            )))));
        }
        if this.overflowed.load(Ordering::Relaxed) {
            this.done = true;
            let data = format!(
                "event: overflow\ndata: {{\"reason\":\"client too slow: more than {} messages queued\"}}\n\n",
                this.queue.max(1)
            );
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(data)))));
        }
        let mut out = String::new();
        let now = this.clock.now().as_millis_i64();
        loop {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(msg)) => {
                    out.push_str(&this.sel.render(&msg, &this.namespace, now));
                    if out.len() >= 64 * 1024 {
                        break;
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        if !out.is_empty() {
            this.keepalive.reset();
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        if this.keepalive.poll_tick(cx).is_ready() {
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                b": keep-alive\n\n",
            )))));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, payload: &str) -> StreamMessage {
        StreamMessage {
            topic: topic.into(),
            payload: Bytes::from(payload.to_owned()),
        }
    }

    #[test]
    fn filters_follow_the_selection() {
        let s = Selection::parse(Some("devices=d1&events=telemetry,alarms")).unwrap();
        assert_eq!(
            s.filters(),
            vec!["$events/alarms/d1/#", "devices/d1/telemetry"]
        );
        let all = Selection::parse(None).unwrap();
        assert_eq!(all.filters().len(), 5);
        // Duplicates and blanks in the lists tap once.
        let dup = Selection::parse(Some("devices=d2,d1,%20d1,d2,&events=twins,twin")).unwrap();
        assert_eq!(
            dup.filters(),
            vec![
                "devices/d1/twin/+/documents",
                "devices/d1/twin/documents",
                "devices/d2/twin/+/documents",
                "devices/d2/twin/documents"
            ]
        );
        assert!(Selection::parse(Some("events=bogus")).is_err());
        assert!(Selection::parse(Some("devices=,")).is_err());
        assert!(Selection::parse(Some("devices=a%2B,b")).is_err());
        assert!(Selection::parse(Some("devices=a/b")).is_err());
        assert!(Selection::parse(Some("extra=1")).is_err());
    }

    #[test]
    fn telemetry_is_one_event_per_selected_point() {
        let s = Selection::parse(Some("devices=d1&metrics=temp")).unwrap();
        let out = s.render(
            &msg("devices/d1/telemetry", r#"{"temp": 20.5, "rpm": 3}"#),
            "default",
            7,
        );
        assert_eq!(
            out,
            "event: telemetry\ndata: {\"device\":\"d1\",\"metric\":\"temp\",\"ts\":7,\"value\":20.5}\n\n"
        );
        assert_eq!(
            s.render(&msg("devices/d2/telemetry", r#"{"temp": 1}"#), "default", 7),
            ""
        );
    }

    #[test]
    fn events_carry_topic_and_payload() {
        let s = Selection::parse(None).unwrap();
        let out = s.render(
            &msg("$events/alarms/d1/overheat", r#"{"state":"active"}"#),
            "default",
            0,
        );
        assert!(out.starts_with("event: alarm\n"), "{out}");
        assert!(out.contains(r#""payload":{"state":"active"}"#), "{out}");
        let out = s.render(&msg("devices/d1/twin/cfg/documents", "{}"), "default", 0);
        assert!(out.starts_with("event: twin\n"), "{out}");
        let out = s.render(&msg("$events/devices/d1/connected", "{}"), "default", 0);
        assert!(out.starts_with("event: presence\n"), "{out}");
        // Topics read as the device contract reads them: what it does not
        // name is no event, whatever its levels.
        for topic in [
            "devices/d1/twin/cfg/delta",
            "devices/d1/twin/a/b/documents",
            "devices/d1/commands/c1",
            "$events/devices/d1/bogus",
            "devices//telemetry",
        ] {
            assert_eq!(s.render(&msg(topic, "{}"), "default", 0), "", "{topic}");
        }
    }

    fn body(queue: usize, keepalive: Duration) -> (StreamSink, SseBody) {
        let (sink, rx, overflowed) = StreamSink::channel(queue);
        let b = SseBody::new(
            rx,
            overflowed,
            Selection::parse(None).unwrap(),
            Arc::new("default".into()),
            Arc::new(|| 42),
            queue,
            keepalive,
            Box::new(()),
        );
        (sink, b)
    }

    async fn next_text(b: &mut SseBody) -> Option<String> {
        use http_body_util::BodyExt;
        let f = b.frame().await?.unwrap();
        Some(String::from_utf8(f.into_data().unwrap().to_vec()).unwrap())
    }

    #[tokio::test]
    async fn an_idle_stream_sends_keep_alive_comments() {
        let (sink, mut b) = body(8, Duration::from_millis(30));
        assert_eq!(next_text(&mut b).await.unwrap(), ": connected\n\n");
        let started = std::time::Instant::now();
        assert_eq!(next_text(&mut b).await.unwrap(), ": keep-alive\n\n");
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(sink.offer("devices/d1/telemetry", Bytes::from_static(b"{\"t\":1}")));
        let ev = next_text(&mut b).await.unwrap();
        assert!(ev.contains("\"ts\":42"), "{ev}");
    }

    #[tokio::test]
    async fn an_overflowed_stream_ends_with_an_overflow_event() {
        let before = stream_overflows();
        let (sink, mut b) = body(2, Duration::from_secs(60));
        next_text(&mut b).await.unwrap();
        let mut offered = 0;
        while sink.offer("devices/d1/telemetry", Bytes::from_static(b"{\"t\":1}")) {
            offered += 1;
        }
        assert_eq!(offered, 2);
        assert!(next_text(&mut b)
            .await
            .unwrap()
            .starts_with("event: overflow\n"));
        assert_eq!(next_text(&mut b).await, None);
        assert!(stream_overflows() > before);
        drop(b);
        assert!(sink.is_closed());
    }

    #[test]
    fn a_full_queue_closes_the_sink_for_good() {
        let (sink, mut rx, overflowed) = StreamSink::channel(2);
        assert!(sink.offer("a", Bytes::new()));
        assert!(sink.offer("a", Bytes::new()));
        assert!(!sink.offer("a", Bytes::new()));
        assert!(overflowed.load(Ordering::Relaxed));
        assert!(rx.try_recv().is_ok());
        assert!(
            !sink.offer("a", Bytes::new()),
            "stays closed once overflowed"
        );
        assert!(sink.is_closed());
    }
}

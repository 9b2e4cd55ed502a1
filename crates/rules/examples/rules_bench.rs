//! Rule evaluation throughput, single-threaded:
//!
//! - (a) 100 simple filter rules (`SELECT temp FROM 'devices/+/telemetry'
//!   WHERE temp > k`) over telemetry JSON from 1,000 devices, the payload
//!   parsed once per message and shared by the rules (`evaluate_parsed`),
//!   and for comparison parsed by every rule (`evaluate`);
//! - (b) 10 windowed rules (5 x `avg(temp) OVER 1m > k`, 5 x
//!   `temp > k FOR 5m`), each device publishing once a second of virtual
//!   time for 400 s (at least 400,000 messages).
//!
//! Every evaluation includes the topic match and building the
//! `Evaluation`. Run with
//! `cargo run --release -p rules --example rules_bench [messages]`.

use std::hint::black_box;
use std::time::Instant;

use rules::{compile, Message, NoContext, ParsedMessage, Rule, RuleState};

const DEVICES: usize = 1_000;

struct Stream {
    topics: Vec<String>,
    payloads: Vec<String>,
}

/// Deterministic telemetry: a sawtooth per device plus a small wobble;
/// one device in ten runs hot (around 90) all the time.
fn stream(n: usize) -> Stream {
    let topics = (0..DEVICES)
        .map(|d| format!("devices/dev-{d:04}/telemetry"))
        .collect();
    let payloads = (0..n)
        .map(|i| {
            let d = i % DEVICES;
            let wobble = (i % 7) as f64 * 0.125;
            let temp = if d.is_multiple_of(10) {
                90.0 + wobble
            } else {
                20.0 + ((i / DEVICES + d) % 80) as f64 + wobble
            };
            format!(
                r#"{{"temp": {temp}, "humidity": {}, "pressure": {}, "rpm": {}, "status": "ok"}}"#,
                40 + i % 20,
                1.0 + (i % 10) as f64 * 0.01,
                1_000 + i % 500
            )
        })
        .collect();
    Stream { topics, payloads }
}

struct Outcome {
    evaluations: u64,
    matched: u64,
    seconds: f64,
}

fn drive(rules: &[Rule], s: &Stream, shared: bool, step_ms: u64) -> Outcome {
    let mut states: Vec<RuleState> = rules.iter().map(|_| RuleState::new()).collect();
    let (mut evaluations, mut matched) = (0u64, 0u64);
    let start = Instant::now();
    for (i, payload) in s.payloads.iter().enumerate() {
        let msg = Message {
            topic: &s.topics[i % DEVICES],
            payload: payload.as_bytes(),
            time_ms: 1_700_000_000_000 + i as u64 * step_ms,
        };
        let parsed = ParsedMessage::new(msg);
        for (rule, state) in rules.iter().zip(states.iter_mut()) {
            if !rule.matches_topic(msg.topic) {
                continue;
            }
            let e = if shared {
                rule.evaluate_parsed(&parsed, state, &NoContext)
            } else {
                rule.evaluate(&msg, state, &NoContext)
            };
            evaluations += 1;
            matched += u64::from(e.matched);
            black_box(e);
        }
    }
    Outcome {
        evaluations,
        matched,
        seconds: start.elapsed().as_secs_f64(),
    }
}

fn report(name: &str, rules: usize, messages: usize, o: &Outcome) {
    println!(
        "{name}: {rules} rules x {messages} messages: {:.0} evaluations/s, {:.0} messages/s, {:.1}% matched, {:.2} s",
        o.evaluations as f64 / o.seconds,
        messages as f64 / o.seconds,
        100.0 * o.matched as f64 / o.evaluations.max(1) as f64,
        o.seconds
    );
}

fn main() {
    let messages: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let s = stream(messages);

    let simple: Vec<Rule> = (0..100)
        .map(|k| {
            compile(&format!(
                "SELECT temp FROM 'devices/+/telemetry' WHERE temp > {}",
                20 + k
            ))
            .expect("benchmark rule compiles")
        })
        .collect();
    // Warm-up, then measure.
    drive(&simple, &stream(2_000), true, 1);
    let o = drive(&simple, &s, true, 1);
    report("(a) simple, shared parse", simple.len(), messages, &o);
    let o = drive(&simple, &s, false, 1);
    report("(a) simple, parse per rule", simple.len(), messages, &o);

    let windowed: Vec<Rule> = (0..10u32)
        .map(|k| {
            let text = if k.is_multiple_of(2) {
                format!(
                    "SELECT avg(temp) OVER 1m AS avg FROM 'devices/+/telemetry' WHERE avg(temp) OVER 1m > {}",
                    40 + k * 5
                )
            } else {
                format!(
                    "SELECT temp FROM 'devices/+/telemetry' WHERE temp > {} FOR 5m",
                    30 + k * 5
                )
            };
            compile(&text).expect("benchmark rule compiles")
        })
        .collect();
    // Each device publishes once a second (one message per millisecond
    // over 1,000 devices), for 400 s of virtual time so that the 1-minute
    // windows fill (60 samples per device) and `FOR 5m` can hold.
    let long = stream(messages.max(400_000));
    let o = drive(&windowed, &long, true, 1);
    report(
        "(b) windowed, shared parse",
        windowed.len(),
        long.payloads.len(),
        &o,
    );
}

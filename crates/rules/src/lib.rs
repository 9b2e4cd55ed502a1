//! Millwright's rule language: a small SQL-like statement evaluated on
//! every MQTT message whose topic matches, with windows, durations, change
//! detection and a streaming anomaly detector.
//!
//! # What it is and is not
//!
//! - The parser ([`compile`]) and the evaluator ([`Rule::evaluate`]).
//!   Pure and sans-io: no sockets, no storage, and the clock is never
//!   read; time enters as the message time ([`Message::time_ms`]). The
//!   state that windows and durations keep is a [`RuleState`] the host
//!   owns, one per rule, bounded by [`Limits`].
//! - Not the actions (republish, webhooks, alarms, commands): the service
//!   that runs rules takes an [`Evaluation`] (did it match, what did
//!   SELECT produce) and fills its templates with [`render`] and
//!   [`render_json`]. Not the registry either: device attributes come
//!   through the host's [`Context`].
//! - Not SQL: the parser is a small recursive-descent one written for this
//!   language (rather than `sqlparser`), because its syntax (`OVER 5m`,
//!   `FOR 5m`, topic filters, `count(*) OVER`) is not SQL, and because
//!   every error must point at a line and column with a message written for
//!   a plant engineer. It is about 1,000 lines with its lexer, and fuzzed (`fuzz/`,
//!   target `rule_parse`).
//!
//! ```
//! use rules::{compile, Message, NoContext, RuleState};
//!
//! let rule = compile(
//!     "SELECT temp, avg(temp) OVER 5m AS avg5
//!      FROM 'devices/+/telemetry'
//!      WHERE temp > 85 FOR 5m",
//! )
//! .unwrap();
//! let mut state = RuleState::new();
//! let mut fired = Vec::new();
//! for minute in 0..=6u64 {
//!     let msg = Message {
//!         topic: "devices/press-7/telemetry",
//!         payload: br#"{"temp": 90}"#,
//!         time_ms: minute * 60_000,
//!     };
//!     assert!(rule.matches_topic(msg.topic));
//!     let eval = rule.evaluate(&msg, &mut state, &NoContext);
//!     fired.push(eval.matched);
//!     assert_eq!(eval.group, "press-7");
//! }
//! // True once the condition has held for five minutes.
//! assert_eq!(fired, [false, false, false, false, false, true, true]);
//! ```
//!
//! # The language
//!
//! ```text
//! SELECT <expr> [AS <name>] {, <expr> [AS <name>]}   -- or *, or *, <expr>...
//! FROM '<MQTT topic filter>'
//! [WHERE <condition>]
//! ```
//!
//! Keywords and function names are case-insensitive; field names are not.
//! `--` starts a comment that runs to the end of the line; a trailing `;`
//! is allowed. A rule is at most 64 KiB and its expressions at most 128
//! levels deep.
//!
//! A rule is evaluated on every message whose topic matches the FROM
//! filter (`+` one level, `#` the rest; `$events/...` topics only match
//! filters that spell their first level). The payload is parsed as JSON;
//! if it is not JSON, `payload()` returns it as a string and every field
//! is null. When the WHERE condition is true (only `true`: null and false
//! do not match), the SELECT list is computed into
//! [`Evaluation::outputs`]: each item is named by `AS` (a name,
//! `"quoted name"` or `'string'`) or by its own text (`temp * 1.8 + 32`);
//! `*` adds the payload object's fields (a payload that is not an object
//! appears as `payload`), and later items override earlier ones. Two items
//! with the same name are a compile error.
//!
//! ## Expressions
//!
//! | form | meaning |
//! | --- | --- |
//! | `temp`, `a.b.c`, `values[0]`, `values[-1]`, `"odd name"`, `a."x y"`, `a['key']`, `a[i]` | JSON field access from the payload's root; a negative index counts from the end; a missing field is null. A reserved word as a field: `"from"`, or after a dot: `a.from`. |
//! | `12`, `1.5`, `2e-3`, `'it''s'`, `true`, `false`, `null` | literals (strings in single quotes, `''` for a quote) |
//! | `+ - * / %` | arithmetic on numbers (`%` keeps the sign of the left side) |
//! | `\|\|` | string concatenation; numbers and booleans are written as text |
//! | `= != <> < <= > >=` | comparison; `=`/`!=` compare any values (different types are unequal, `1 = 1.0`); ordering needs two numbers, two strings or two booleans. Not chained: `a < b AND b < c`. |
//! | `AND OR NOT` | three-valued logic: `false AND null` is false, `true OR null` is true, otherwise null propagates |
//! | `x IS NULL`, `x IS NOT NULL` | never null |
//! | `x IN (a, b, ...)`, `x NOT IN (...)` | null if `x` is null, or if no item matches and one is null |
//! | `(...)` | grouping |
//!
//! Precedence, loosest first: `FOR`, `OR`, `AND`, `NOT`, comparisons /
//! `IS` / `IN`, `||`, `+ -`, `* / %`, unary `-`, then `.field` / `[index]`.
//!
//! **Null propagation.** Arithmetic, comparison, `||` and the functions
//! below (except `coalesce`, `concat` and the message functions) give
//! null when an argument is null; a WHERE that is null does not match.
//! **Runtime errors** never stop a rule: division (or `%`) by zero, a type
//! mismatch (`'a' + 1`, `'a' < 1`, `abs('x')`) or a failed cast
//! (`number('abc')`) yields null and the first such error is recorded in
//! [`Evaluation::error`] with its position; evaluation goes on. Numbers
//! are 64-bit floats; in outputs, whole numbers below 2^53 are written as
//! integers, and infinities as null.
//!
//! ## Functions
//!
//! | function | result |
//! | --- | --- |
//! | `topic()`, `topic(n)` | the topic; its `n`th level (1-based), null past the end |
//! | `device_id()` | the `{id}` of `devices/{id}/...`, else null |
//! | `timestamp()` | the message time, Unix milliseconds |
//! | `payload()` | the whole payload: JSON, or the raw text when it is not JSON |
//! | `coalesce(a, b, ...)` | the first non-null argument |
//! | `abs(x)`, `floor(x)`, `ceil(x)` | as named |
//! | `round(x)`, `round(x, digits)` | half away from zero; negative digits round to tens, hundreds... |
//! | `min(a, b)`, `max(a, b)` | the smaller / larger of two numbers (or strings) |
//! | `lower(s)`, `upper(s)` | case conversion |
//! | `length(x)` | characters of a string, elements of an array, keys of an object |
//! | `concat(a, b, ...)` | the arguments as text, nulls skipped (never null) |
//! | `substring(s, start[, len])` | SQL's: 1-based character positions |
//! | `contains(s, sub)` | substring test; on an array, whether an element equals `sub` |
//! | `starts_with(s, prefix)`, `ends_with(s, suffix)` | prefix / suffix test |
//! | `number(x)` | numbers; numeric strings (`' 21.5 '`); booleans as 1/0 |
//! | `string(x)` | text form (arrays and objects as JSON) |
//! | `bool(x)` | booleans; `'true'`/`'false'` (any case); numbers (non-zero is true) |
//! | `device_type()` | the device's type, from the host's [`Context`] |
//! | `label('key')` | one of the device's labels, from the host's [`Context`] |
//!
//! ## Stateful expressions
//!
//! State is kept per rule and per **group**: the device id
//! (`devices/{id}/...`) or, when there is none, the topic. Every stateful
//! expression sees every message of its group whose topic matches, inner
//! expressions first, whether or not WHERE holds and whatever `AND` / `OR`
//! short-circuit: `WHERE a > 1 AND avg(t) OVER 1m > 5` still feeds the
//! window when `a <= 1`. Time is the message time; a message older than
//! the newest one its group has seen counts as arriving at that newest
//! time (windows never go back). Gaps between messages are not
//! interpolated: state changes only when a message arrives.
//!
//! **Windows.** `avg|sum|count|min|max|first|last(expr) OVER <duration>`
//! is the aggregate of the samples of the last `<duration>` (a sample at
//! `t` counts at `now` while `now - t < duration`), the current one
//! included. `... OVER TUMBLING <duration>` is the aggregate of the current
//! tumbling window (aligned to the Unix epoch: `[k*d, (k+1)*d)`) so far;
//! the first message of the next window starts a new one. `avg`, `sum`,
//! `min` and `max` take numbers (other values are skipped); `count(expr)`
//! counts non-null values and `count(*)` messages; `first` / `last` take
//! any non-null value. Over no samples, `count` is 0 and the others null.
//! Durations: `500ms`, `30s`, `5m`, `2h`, `1d`.
//!
//! A sliding window holds at most [`Limits::max_samples_per_window`]
//! entries per group (default 10,000). Beyond, entries falling into the
//! same time slot of `ceil(2 * duration / max)` ms are merged, keeping
//! their count, sum, minimum and maximum (and the oldest value, for
//! `first`): no sample is lost, but a merged entry leaves the window with
//! its newest sample, so a result may include samples up to one slot older
//! than the window (60 ms for `OVER 5m` at the default). Memory per group
//! is at most that many entries (40 bytes each) per window expression.
//!
//! **Durations.** `<condition> FOR <duration>` is true once the condition
//! has been true on every evaluation of the group for at least the
//! duration: at time `now`, true iff the condition is true now and has
//! been on every message since a message at `t0 <= now - duration`. A
//! false or null condition resets it. `FOR` applies to the whole
//! expression before it (`WHERE a > 1 AND b > 2 FOR 5m` holds both for
//! five minutes; parenthesise for less: `(a > 1 FOR 5m) AND b > 2`), and
//! may be used in WHERE and in SELECT.
//!
//! **Change detection.** `changed(expr)`: whether the value differs from
//! the group's previous (non-null) value; false on the first.
//! `previous(expr)`: the group's previous non-null value (null on the
//! first). `delta(expr)`: the current number minus the previous one.
//! `rate(expr)`: that difference per second of message time (null when no
//! time has passed). Null (missing) values leave the state untouched and
//! give null (except `previous`, which still answers).
//!
//! **Anomaly.** `zscore(expr[, alpha])`: how many standard deviations the
//! value is from the group's exponentially weighted mean, using the mean
//! and variance of the values before it (`mean += alpha * diff`,
//! `var = (1 - alpha) * (var + diff * alpha * diff)`, alpha default 0.1,
//! a literal in (0, 1]). Null for the first 5 values of a group (warm-up).
//! After a constant signal (variance 0) any different value is infinitely
//! unusual: plus or minus infinity, which compares as expected
//! (`abs(zscore(v)) > 3` is true) and is written as null in outputs.
//!
//! **Bounds.** A rule keeps state for at most [`Limits::max_groups`]
//! groups (default 10,000); a new group beyond evicts the least recently
//! used one, whose windows start afresh if it comes back. A state used
//! with an edited rule starts afresh if its stateful expressions changed.
//!
//! ## Examples
//!
//! ```text
//! -- Spindle too hot for five minutes: alarm, webhook, slow-down.
//! SELECT temp, device_id() AS device, avg(temp) OVER 5m AS avg_temp
//! FROM 'devices/+/telemetry'
//! WHERE temp > 85 FOR 5m
//!
//! -- Vibration anomaly on presses only.
//! SELECT vibration, zscore(vibration) AS z
//! FROM 'devices/+/telemetry'
//! WHERE device_type() = 'press' AND abs(zscore(vibration)) > 3
//!
//! -- Status changes, with the previous status.
//! SELECT status, previous(status) AS was FROM 'devices/+/status' WHERE changed(status)
//!
//! -- Pressure falling faster than 0.5 bar/s, per line.
//! SELECT rate(pressure) AS r, label('line') AS line
//! FROM 'devices/+/telemetry' WHERE rate(pressure) < -0.5
//!
//! -- Hourly energy so far, every message; enrich a twin event.
//! SELECT sum(kwh) OVER TUMBLING 1h AS kwh_this_hour FROM 'devices/+/energy'
//! SELECT *, topic(3) AS kind FROM '$events/twin/#'
//! ```
//!
//! # Evaluating many rules
//!
//! Parse a message once with [`ParsedMessage`] and give it to every
//! matching rule with [`Rule::evaluate_parsed`]; the payload is parsed on
//! first use. [`Rule::dry_run`] evaluates a sample message against a
//! scratch copy of the message's group state without changing it.

mod ast;
mod error;
mod eval;
mod functions;
mod lexer;
mod message;
mod parser;
mod rule;
mod slot;
mod state;
mod template;
mod topic;
mod value;
mod window;

pub use error::ParseError;
pub use message::{Context, Message, NoContext, ParsedMessage};
pub use rule::{compile, Evaluation, Rule};
pub use state::{Limits, RuleState};
pub use template::{render, render_json};

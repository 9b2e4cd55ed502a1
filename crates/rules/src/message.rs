//! What a rule sees: the message, its payload parsed once and shared by
//! every rule, and what the host knows about devices.

use std::sync::OnceLock;

use serde_json::Value;

use crate::topic;

/// A message as the broker delivered it. `time_ms` is the message time
/// (Unix milliseconds) chosen by the host: windows, durations and rates
/// use it, never the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub time_ms: u64,
}

/// A message with its payload parsed as JSON on first use, so that many
/// rules evaluated on one message parse it once
/// ([`crate::Rule::evaluate_parsed`]). `Sync`: rules may share it across
/// threads.
#[derive(Debug)]
pub struct ParsedMessage<'a> {
    msg: Message<'a>,
    json: OnceLock<Option<Value>>,
}

impl<'a> ParsedMessage<'a> {
    pub fn new(msg: Message<'a>) -> Self {
        ParsedMessage {
            msg,
            json: OnceLock::new(),
        }
    }

    pub fn message(&self) -> &Message<'a> {
        &self.msg
    }

    /// The payload as JSON, or `None` if it is not JSON (parsed on the
    /// first call).
    pub fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| serde_json::from_slice(self.msg.payload).ok())
            .as_ref()
    }

    /// The `{id}` of a `devices/{id}/...` topic.
    pub fn device_id(&self) -> Option<&'a str> {
        topic::device_id(self.msg.topic)
    }
}

/// What the host knows about devices (the registry), for `device_type()`
/// and `label('key')`. Both may return `None` (unknown device, no such
/// label): the function then yields null.
pub trait Context {
    fn device_type(&self, device_id: &str) -> Option<String> {
        let _ = device_id;
        None
    }

    fn label(&self, device_id: &str, key: &str) -> Option<String> {
        let _ = (device_id, key);
        None
    }
}

/// A [`Context`] that knows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoContext;

impl Context for NoContext {}

//! What the state machine tells the application: the connection phase,
//! events, and why a connection ended.

use std::fmt;

use mqtt_proto::{ConnAck, Disconnect, Publish, ReasonCode, SubAck, UnsubAck};

/// Where the current connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No connection: `connect` may be called.
    Disconnected,
    /// CONNECT queued, waiting for CONNACK.
    Connecting,
    /// CONNACK with success received.
    Connected,
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// We sent DISCONNECT.
    Local,
    /// The server refused CONNECT with this reason (v5 code; a v3.1.1
    /// return code is mapped to the v5 one).
    Refused(ReasonCode),
    /// The server sent DISCONNECT (v5). Boxed: it is rare and large.
    Server(Box<Disconnect>),
    /// No PINGRESP within the keep-alive interval.
    KeepAliveTimeout,
    /// No CONNACK within the connect timeout.
    ConnectTimeout,
    /// The server broke the protocol; the reason code is the one we sent
    /// in DISCONNECT (v5).
    Protocol(ReasonCode, &'static str),
    /// The transport closed or failed.
    ConnectionLost,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Local => f.write_str("closed by the client"),
            DisconnectReason::Refused(code) => write!(f, "refused by the server ({code})"),
            DisconnectReason::Server(d) => match &d.properties.reason_string {
                Some(s) => write!(f, "server sent DISCONNECT ({}: {s})", d.reason_code),
                None => write!(f, "server sent DISCONNECT ({})", d.reason_code),
            },
            DisconnectReason::KeepAliveTimeout => f.write_str("keep-alive timeout"),
            DisconnectReason::ConnectTimeout => f.write_str("no CONNACK in time"),
            DisconnectReason::Protocol(code, what) => {
                write!(f, "protocol error ({code}): {what}")
            }
            DisconnectReason::ConnectionLost => f.write_str("connection lost"),
        }
    }
}

/// What the application learns from the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// CONNACK with success.
    Connected {
        session_present: bool,
        connack: ConnAck,
    },
    /// An application message from the server (QoS 2: delivered once, on
    /// first receipt).
    Message(Publish),
    /// A QoS 1 publish was acknowledged; a reason of 0x80 or more means the
    /// server rejected it.
    PubAck {
        packet_id: u16,
        reason_code: ReasonCode,
    },
    /// A QoS 2 publish is complete (PUBCOMP), or ended early by a PUBREC
    /// with a failure reason (that reason is given). It is also reported with
    /// success when a reconnect finds the server's session gone after the
    /// server had already acknowledged receipt with PUBREC.
    PubComp {
        packet_id: u16,
        reason_code: ReasonCode,
    },
    SubAck(SubAck),
    UnsubAck(UnsubAck),
    /// The connection ended. Outstanding SUBSCRIBE and UNSUBSCRIBE requests
    /// are abandoned (they are not resent); in-flight publishes stay in the
    /// session and are resent by the next `connect`.
    Disconnected {
        reason: DisconnectReason,
    },
}

impl Event {
    /// The packet id and reason code of an outgoing QoS 1/2 publish that
    /// this event completes ([`Event::PubAck`] or [`Event::PubComp`]; a
    /// reason of 0x80 or more is a refusal), `None` for any other event.
    pub fn completed_publish(&self) -> Option<(u16, ReasonCode)> {
        match *self {
            Event::PubAck {
                packet_id,
                reason_code,
            }
            | Event::PubComp {
                packet_id,
                reason_code,
            } => Some((packet_id, reason_code)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_publish_is_puback_or_pubcomp() {
        let refused = ReasonCode(0x87);
        let ack = Event::PubAck {
            packet_id: 7,
            reason_code: ReasonCode::SUCCESS,
        };
        let comp = Event::PubComp {
            packet_id: 9,
            reason_code: refused,
        };
        assert_eq!(ack.completed_publish(), Some((7, ReasonCode::SUCCESS)));
        assert_eq!(comp.completed_publish(), Some((9, refused)));
        let lost = Event::Disconnected {
            reason: DisconnectReason::ConnectionLost,
        };
        assert_eq!(lost.completed_publish(), None);
    }
}

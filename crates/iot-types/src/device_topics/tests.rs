use proptest::prelude::*;

use super::*;

fn p(t: &str) -> Option<DeviceTopic<'_>> {
    parse(t)
}

#[test]
fn telemetry_topics() {
    assert_eq!(
        p("devices/d1/telemetry"),
        Some(DeviceTopic::Telemetry { device: "d1" })
    );
    assert_eq!(telemetry("d1"), "devices/d1/telemetry");
    assert_eq!(telemetry_device("devices/d1/telemetry"), Some("d1"));
    for no in [
        "devices//telemetry",
        "devices/d1/telemetry/x",
        "devices/d1/telemetryx",
        "devices/d1",
        "devices/d1/",
        "devices/+/telemetry",
        "devices/#",
        "device/d1/telemetry",
        "/devices/d1/telemetry",
        "devices/d1/twin/telemetry",
    ] {
        assert_eq!(telemetry_device(no), None, "{no}");
    }
}

#[test]
fn twin_topics() {
    let main = |topic| DeviceTopic::Twin {
        device: "d1",
        name: "",
        topic,
    };
    let named = |topic| DeviceTopic::Twin {
        device: "d1",
        name: "config",
        topic,
    };
    for t in TwinTopic::ALL {
        assert_eq!(p(&format!("devices/d1/twin/{}", t.suffix())), Some(main(t)));
        assert_eq!(
            p(&format!("devices/d1/twin/config/{}", t.suffix())),
            Some(named(t))
        );
        assert_eq!(twin("d1", "", t), format!("devices/d1/twin/{}", t.suffix()));
        assert_eq!(main(t).to_string(), twin("d1", "", t));
        assert_eq!(named(t).to_string(), twin("d1", "config", t));
    }
    assert_eq!(twin_get("d1"), "devices/d1/twin/get");
    assert_eq!(twin_update("d1"), "devices/d1/twin/update");
    assert_eq!(twin_delta("d1"), "devices/d1/twin/delta");
    assert_eq!(twin_prefix("d1", ""), "devices/d1/twin");
    assert_eq!(twin_prefix("d1", "cfg"), "devices/d1/twin/cfg");
    assert!(TwinTopic::Get.is_request() && TwinTopic::Update.is_request());
    assert!(!TwinTopic::GetAccepted.is_request() && !TwinTopic::Delta.is_request());
    for no in [
        "devices/d1/twin",
        "devices/d1/twin/",
        "devices/d1/twin/x",
        "devices/d1/twin/get/x",
        "devices/d1/twin/get/accepted/x",
        "devices/d1/twin/cfg/get/accepted/x",
        "devices/d1/twin/cfg/delta/x",
        "devices/d1/twin//get",
        "devices/d1/twin/+/get",
        "devices/d1/twin/#",
        "devices//twin/get",
        // Reserved words never name a twin.
        "devices/d1/twin/delta/get",
        "devices/d1/twin/documents/update",
        "devices/d1/twin/accepted/get",
        "devices/d1/twin/rejected/delta",
    ] {
        assert_eq!(p(no), None, "{no}");
    }
    for r in [
        "",
        "get",
        "update",
        "delta",
        "documents",
        "accepted",
        "rejected",
    ] {
        assert!(is_reserved_twin_name(r), "{r}");
    }
    assert!(!is_reserved_twin_name("config"));
}

#[test]
fn command_topics() {
    assert_eq!(
        p("devices/d1/commands/c1"),
        Some(DeviceTopic::Command {
            device: "d1",
            command: "c1"
        })
    );
    assert_eq!(
        p("devices/d1/commands/c1/response"),
        Some(DeviceTopic::CommandResponse {
            device: "d1",
            command: "c1"
        })
    );
    // A command may be called `response`; the level count decides.
    assert_eq!(
        p("devices/d1/commands/response"),
        Some(DeviceTopic::Command {
            device: "d1",
            command: "response"
        })
    );
    assert_eq!(command("d1", "c1"), "devices/d1/commands/c1");
    assert_eq!(
        command_response("d1", "c1"),
        "devices/d1/commands/c1/response"
    );
    for no in [
        "devices/d1/commands",
        "devices/d1/commands/",
        "devices/d1/commands//response",
        "devices/d1/commands/c1/other",
        "devices/d1/commands/c1/response/x",
        "devices/d1/commands/+",
        "devices/d1/commands/+/response",
        "devices//commands/c1",
    ] {
        assert_eq!(p(no), None, "{no}");
    }
}

#[test]
fn event_topics() {
    for e in PresenceEvent::ALL {
        let t = presence("d1", e);
        assert_eq!(t, format!("$events/devices/d1/{}", e.as_str()));
        assert_eq!(
            p(&t),
            Some(DeviceTopic::Presence {
                device: "d1",
                event: e
            })
        );
    }
    assert_eq!(
        p("$events/alarms/d1/overheat"),
        Some(DeviceTopic::Alarm {
            device: "d1",
            alarm_type: "overheat"
        })
    );
    assert_eq!(
        p("$events/alarms/d1/temp/high"),
        Some(DeviceTopic::Alarm {
            device: "d1",
            alarm_type: "temp/high"
        })
    );
    assert_eq!(alarm("d1", "overheat"), "$events/alarms/d1/overheat");
    for no in [
        "$events/devices/d1/rebooted",
        "$events/devices/d1",
        "$events/devices//connected",
        "$events/devices/d1/connected/x",
        "$events/alarms/d1",
        "$events/alarms/d1/",
        "$events/alarms//x",
        "$events/alarms/d1/a//b",
        "$events/alarms/d1/#",
        "$events/twin/d1",
        "$SYS/broker/uptime",
    ] {
        assert_eq!(p(no), None, "{no}");
    }
}

#[test]
fn provision_topics() {
    for s in ProvisionStep::ALL {
        let t = provision("c-1", s);
        assert_eq!(t, format!("$provision/c-1/{}", s.as_str()));
        let parsed = p(&t);
        assert_eq!(
            parsed,
            Some(DeviceTopic::Provision {
                client_id: "c-1",
                step: s
            })
        );
        assert_eq!(parsed.and_then(|t| t.device()), None);
    }
    assert_eq!(provision_replies_filter("c-1"), "$provision/c-1/+");
    for no in [
        "$provision/c-1",
        "$provision//request",
        "$provision/c-1/request/x",
        "$provision/c-1/other",
        "$provision/+/request",
    ] {
        assert_eq!(p(no), None, "{no}");
    }
}

#[test]
fn id_levels() {
    assert!(is_level("d1") && is_level("$x") && is_level("a b"));
    for no in ["", "a/b", "+", "a+", "#", "/"] {
        assert!(!is_level(no), "{no}");
    }
}

#[test]
fn the_device_tree() {
    assert_eq!(device_of("devices/d1/telemetry"), Some("d1"));
    assert_eq!(device_of("devices/d1"), Some("d1"));
    assert_eq!(device_of("devices/d1/ota/job"), Some("d1"));
    assert_eq!(device_of("devices//x"), None);
    assert_eq!(device_of("devices/"), None);
    assert_eq!(device_of("devices"), None);
    assert_eq!(device_of("$events/devices/d1/connected"), None);
    assert!(in_device_tree("devices"));
    assert!(in_device_tree("devices/"));
    assert!(in_device_tree("devices/+/telemetry"));
    assert!(!in_device_tree("devicesx"));
    assert!(!in_device_tree("+/d1/telemetry"));
    assert!(!in_device_tree("#"));
    assert_eq!(device_tree_filter("d1"), "devices/d1/#");
    assert_eq!(
        p("devices/d1/telemetry").and_then(|t| t.device()),
        Some("d1")
    );
    assert_eq!(p("devices/d1/ota/job"), None);
}

#[test]
fn filters_are_spelled_like_the_topics() {
    let m = |f: &str, t: &str| {
        let (mut f, mut t) = (f.split('/'), t.split('/'));
        loop {
            match (f.next(), t.next()) {
                (Some("#"), _) => return true,
                (Some("+"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    };
    assert!(m(TELEMETRY_FILTER, &telemetry("d")));
    assert!(m(TWIN_FILTER, &twin("d", "n", TwinTopic::Update)));
    assert!(m(COMMAND_FILTER, &command("d", "c")));
    assert!(!m(COMMAND_FILTER, &command_response("d", "c")));
    assert!(m(COMMAND_RESPONSE_FILTER, &command_response("d", "c")));
    assert!(m(PRESENCE_FILTER, &presence("d", PresenceEvent::Active)));
    assert!(m(
        PROVISION_REQUEST_FILTER,
        &provision("c", ProvisionStep::Request)
    ));
}

fn arb_level() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:$ -]{1,12}"
}

fn twin_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        arb_level().prop_filter("reserved", |n| !is_reserved_twin_name(n)),
    ]
}

fn alarm_type() -> impl Strategy<Value = String> {
    prop::collection::vec(arb_level(), 1..4).prop_map(|l| l.join("/"))
}

#[derive(Debug, Clone)]
enum Owned {
    Telemetry(String),
    Twin(String, String, TwinTopic),
    Command(String, String),
    CommandResponse(String, String),
    Presence(String, PresenceEvent),
    Alarm(String, String),
    Provision(String, ProvisionStep),
}

impl Owned {
    fn view(&self) -> DeviceTopic<'_> {
        match self {
            Owned::Telemetry(d) => DeviceTopic::Telemetry { device: d },
            Owned::Twin(d, n, t) => DeviceTopic::Twin {
                device: d,
                name: n,
                topic: *t,
            },
            Owned::Command(d, c) => DeviceTopic::Command {
                device: d,
                command: c,
            },
            Owned::CommandResponse(d, c) => DeviceTopic::CommandResponse {
                device: d,
                command: c,
            },
            Owned::Presence(d, e) => DeviceTopic::Presence {
                device: d,
                event: *e,
            },
            Owned::Alarm(d, a) => DeviceTopic::Alarm {
                device: d,
                alarm_type: a,
            },
            Owned::Provision(c, s) => DeviceTopic::Provision {
                client_id: c,
                step: *s,
            },
        }
    }

    /// The same topic through the named formatters.
    fn formatted(&self) -> String {
        match self {
            Owned::Telemetry(d) => telemetry(d),
            Owned::Twin(d, n, t) => twin(d, n, *t),
            Owned::Command(d, c) => command(d, c),
            Owned::CommandResponse(d, c) => command_response(d, c),
            Owned::Presence(d, e) => presence(d, *e),
            Owned::Alarm(d, a) => alarm(d, a),
            Owned::Provision(c, s) => provision(c, *s),
        }
    }
}

fn any_topic() -> impl Strategy<Value = Owned> {
    let twin_topic = prop::sample::select(TwinTopic::ALL.to_vec());
    let event = prop::sample::select(PresenceEvent::ALL.to_vec());
    let step = prop::sample::select(ProvisionStep::ALL.to_vec());
    prop_oneof![
        arb_level().prop_map(Owned::Telemetry),
        (arb_level(), twin_name(), twin_topic).prop_map(|(d, n, t)| Owned::Twin(d, n, t)),
        (arb_level(), arb_level()).prop_map(|(d, c)| Owned::Command(d, c)),
        (arb_level(), arb_level()).prop_map(|(d, c)| Owned::CommandResponse(d, c)),
        (arb_level(), event).prop_map(|(d, e)| Owned::Presence(d, e)),
        (arb_level(), alarm_type()).prop_map(|(d, a)| Owned::Alarm(d, a)),
        (arb_level(), step).prop_map(|(c, s)| Owned::Provision(c, s)),
    ]
}

proptest! {
    #[test]
    fn parse_of_format_is_identity(t in any_topic()) {
        let topic = t.view().to_string();
        prop_assert_eq!(&topic, &t.formatted());
        prop_assert_eq!(parse(&topic), Some(t.view()));
        if let Some(device) = t.view().device() {
            if !matches!(t, Owned::Presence(..) | Owned::Alarm(..)) {
                prop_assert_eq!(device_of(&topic), Some(device));
            }
        }
        prop_assert_eq!(
            telemetry_device(&topic),
            matches!(t, Owned::Telemetry(_)).then(|| t.view().device()).flatten()
        );
    }

    #[test]
    fn format_of_parse_is_identity(levels in prop::collection::vec(
        prop_oneof![
            Just("devices".to_string()), Just("twin".to_string()), Just("get".to_string()),
            Just("accepted".to_string()), Just("commands".to_string()),
            Just("response".to_string()), Just("telemetry".to_string()),
            Just("$events".to_string()), Just("alarms".to_string()),
            Just("$provision".to_string()), Just("request".to_string()),
            Just("connected".to_string()), Just(String::new()), Just("+".to_string()),
            "[a-z]{1,3}",
        ],
        0..7,
    )) {
        let topic = levels.join("/");
        if let Some(t) = parse(&topic) {
            prop_assert_eq!(t.to_string(), topic);
        }
    }

    #[test]
    fn never_panics(s in "\\PC{0,40}") {
        let _ = parse(&s);
        let _ = device_of(&s);
        let _ = telemetry_device(&s);
    }
}

/// The assertions of the fleet's former `parse_device_topic` test: the
/// fleet acts on twin requests (`is_request`), command responses and
/// commands; the platform's own replies are not requests.
#[test]
fn fleet_inbound_topics() {
    fn request(t: &str) -> Option<(&str, &str, TwinTopic)> {
        match parse(t) {
            Some(DeviceTopic::Twin {
                device,
                name,
                topic,
            }) if topic.is_request() => Some((device, name, topic)),
            _ => None,
        }
    }
    assert_eq!(
        request("devices/d1/twin/get"),
        Some(("d1", "", TwinTopic::Get))
    );
    assert_eq!(
        request("devices/d1/twin/config/update"),
        Some(("d1", "config", TwinTopic::Update))
    );
    assert_eq!(request("devices/d1/twin/get/accepted"), None);
    assert_eq!(request("devices/d1/twin/update/rejected"), None);
    assert_eq!(request("devices/d1/twin/delta"), None);
    assert_eq!(
        parse("devices/d1/commands/c1/response"),
        Some(DeviceTopic::CommandResponse {
            device: "d1",
            command: "c1"
        })
    );
    assert_eq!(
        parse("devices/d1/commands/c1"),
        Some(DeviceTopic::Command {
            device: "d1",
            command: "c1"
        })
    );
    assert_eq!(parse("devices//twin/get"), None);
    assert_eq!(request("devices/d1/telemetry"), None);
}

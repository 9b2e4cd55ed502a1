//! `serve --demo`: a simulated factory inside the platform — registered
//! machines with their own tokens, demo rules, and the simulator driving
//! them over the real MQTT listener — plus a demo login.
//!
//! What it is not: it opens no store and binds no socket; the binary
//! hands it the platform's registry, rules engine and MQTT address.

use std::net::SocketAddr;
use std::sync::Arc;

use iot_types::{SharedClock, Timestamp};
use serde_json::json;

/// Why the demo could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("demo machines and login: {0}")]
    Registry(#[from] registry::RegistryError),
    #[error("cannot register demo machine {id}: {message}")]
    Import { id: String, message: String },
    #[error("demo rule {name}: {message}")]
    Rule { name: String, message: String },
    #[error("demo setup task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

const PREFIX: &str = "demo-";

/// Registers (or re-keys) `count` demo machines and returns their
/// credentials for the simulator.
fn fleet(
    registry: &registry::Registry,
    count: usize,
    now: Timestamp,
) -> Result<simulator::Fleet, Error> {
    let now = now.as_millis();
    let ns = iot_types::DEFAULT_NAMESPACE;
    let mut missing = Vec::new();
    let mut existing = Vec::new();
    for i in 0..count {
        let id = format!("{PREFIX}{:04}", i + 1);
        let kind = simulator::MachineKind::for_index(i);
        if registry.get_device(ns, &id)?.is_some() {
            existing.push((id, kind));
        } else {
            let mut d = registry::NewDevice::new(&id);
            d.name = Some(format!("{} {}", kind.as_str(), i + 1));
            d.device_type = Some(kind.as_str().to_string());
            d.labels.insert("line".into(), format!("{}", i % 8 + 1));
            d.labels.insert("site".into(), "demo-plant".into());
            d.groups = vec![format!("line-{}", i % 8 + 1)];
            missing.push((d, kind));
        }
    }
    let mut devices = Vec::with_capacity(count);
    if !missing.is_empty() {
        let kinds: std::collections::HashMap<String, simulator::MachineKind> =
            missing.iter().map(|(d, k)| (d.id.clone(), *k)).collect();
        let report = registry.import_devices(
            ns,
            missing.into_iter().map(|(d, _)| d).collect(),
            true,
            now,
        )?;
        if let Some(e) = report.errors.first() {
            return Err(Error::Import {
                id: e.id.clone(),
                message: e.message.clone(),
            });
        }
        for (id, token) in report.tokens {
            let kind = kinds
                .get(&id)
                .copied()
                .unwrap_or(simulator::MachineKind::Press);
            devices.push((id, token, kind));
        }
    }
    for (id, kind) in existing {
        let token = registry.issue_device_token(ns, &id, 0, now)?;
        devices.push((id, token, kind));
    }
    devices.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(simulator::Fleet { devices })
}

/// The demo rules (created once; kept if an operator changed them).
fn rules(a: &automation::Automation) -> Result<(), Error> {
    let defs = [
        json!({
            "name": "demo-overheat",
            "description": "a machine above 90 °C for 30 s: critical alarm (cleared when it cools) and a slow-down",
            "sql": "SELECT temp, rpm, device_id() AS device FROM 'devices/+/telemetry' WHERE temp > 90 FOR 30s",
            "actions": [
                {"type": "alarm", "alarm_type": "overheat", "severity": "critical", "auto_clear": true},
                {"type": "command", "method": "set_speed", "params": {"rpm": 600}, "timeout": 30}
            ]
        }),
        json!({
            "name": "demo-vibration",
            "description": "vibration far from its usual level (z-score over 4): warning",
            "sql": "SELECT vibration, zscore(vibration) AS z FROM 'devices/+/telemetry' WHERE abs(zscore(vibration)) > 4",
            "actions": [
                {"type": "alarm", "alarm_type": "vibration", "severity": "warning", "auto_clear": true}
            ]
        }),
    ];
    for d in defs {
        let name = d["name"].as_str().unwrap_or_default();
        if a.get(name).is_none() {
            a.save(&d, true).map_err(|e| Error::Rule {
                name: name.to_string(),
                message: e.to_string(),
            })?;
        }
    }
    Ok(())
}

/// Sets up the demo and runs the simulated factory until `stop`; the
/// machines' tokens and the demo login are dated by `clock`.
pub async fn run(
    registry: Arc<registry::Registry>,
    automation: Arc<automation::Automation>,
    mqtt: SocketAddr,
    http: Option<String>,
    count: usize,
    clock: SharedClock,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), Error> {
    let now = clock.now();
    let reg = registry.clone();
    let fleet = tokio::task::spawn_blocking(move || fleet(&reg, count, now)).await??;
    rules(&automation)?;
    // A demo login, new password at every start.
    let password: String = {
        let bytes: [u8; 9] = rand::random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    let reg = registry.clone();
    let pw = password.clone();
    tokio::task::spawn_blocking(move || -> Result<(), Error> {
        match reg.get_user("demo")? {
            Some(_) => {
                reg.update_user(
                    "demo",
                    Some(registry::Role::Operator),
                    Some(false),
                    Some(&pw),
                )?;
            }
            None => {
                reg.create_user(
                    "demo",
                    &pw,
                    registry::Role::Operator,
                    clock.now().as_millis(),
                )?;
            }
        }
        Ok(())
    })
    .await??;
    println!(
        "Demo mode: {} simulated machines on MQTT {mqtt}, demo rules `demo-overheat` and `demo-vibration`.",
        fleet.devices.len()
    );
    if let Some(url) = http {
        println!("Dashboard: {url}/   login: demo / {password}   (API reference: {url}/api/docs)");
    }
    let mut options = simulator::FleetOptions::new(mqtt);
    options.fault_rate_per_hour = 2.0;
    options.churn_per_minute = 0.01;
    options.connect_concurrency = 32;
    let report = simulator::run_fleet(fleet, options, stop.cancelled_owned()).await;
    tracing::info!(?report, "demo fleet stopped");
    Ok(())
}

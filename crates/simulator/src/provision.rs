//! Where the fleet's credentials come from: registered through the HTTP API
//! (`--url`, `--token`), or read from a CSV file (`--credentials`).
//!
//! Through the API the devices `{prefix}0001` ... are made to exist, each
//! with a fresh token: the ones missing are imported
//! (`POST /api/devices/import?tokens=true`), the ones already registered get
//! a new token (`POST /api/devices/{id}/tokens` without grace, which also
//! drops a live session still using the old one). The calls go through
//! `api-client` and are blocking (ureq); call them from a blocking thread.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use api_client::{enc, Client, DeviceFilter, ImportFormat};
use serde_json::{json, Value};

use crate::machine::MachineKind;
use crate::SimError;

/// Devices per production line (labels and groups).
const MACHINES_PER_LINE: usize = 10;
/// Devices per import request (the API bounds request bodies).
const IMPORT_BATCH: usize = 500;
/// Page size of the device listing (the API's largest).
const LIST_LIMIT: usize = 1000;
/// Listing pages followed at most.
const MAX_PAGES: usize = 10_000;
/// Threads issuing tokens for devices that already exist.
const TOKEN_WORKERS: usize = 4;
/// Time limit of one API call.
const API_TIMEOUT: Duration = Duration::from_secs(30);

/// The devices to simulate: id, token (the MQTT password), kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fleet {
    pub devices: Vec<(String, String, MachineKind)>,
}

/// The HTTP API and an API token with the operator role.
#[derive(Debug, Clone)]
pub struct ApiTarget {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub token: String,
}

/// The id of the `n`-th device (from 1): `sim-0001`.
pub fn device_id(prefix: &str, n: usize) -> String {
    format!("{prefix}{n:04}")
}

/// The registration of the `n`-th device (from 1), as the import takes it.
pub(crate) fn device_json(prefix: &str, n: usize) -> Value {
    let kind = MachineKind::for_index(n - 1);
    let line = (n - 1) / MACHINES_PER_LINE + 1;
    json!({
        "id": device_id(prefix, n),
        "name": format!("{} {n}", kind.title()),
        "type": kind.as_str(),
        "labels": { "line": line.to_string(), "site": "demo" },
        "groups": [format!("line-{line}")],
    })
}

/// Registers `count` devices named `{prefix}0001`... (or gives the existing
/// ones fresh tokens) and returns their credentials.
pub fn provision(api: &ApiTarget, prefix: &str, count: usize) -> Result<Fleet, SimError> {
    let client = Client::new(&api.url, Some(api.token.clone())).with_timeout(API_TIMEOUT);
    let wanted: Vec<String> = (1..=count).map(|n| device_id(prefix, n)).collect();
    let existing = existing(&client, prefix, &wanted)?;
    let mut tokens: std::collections::HashMap<String, String> = Default::default();

    let missing: Vec<usize> = (1..=count)
        .filter(|&n| !existing.contains(&wanted[n - 1]))
        .collect();
    for batch in missing.chunks(IMPORT_BATCH) {
        let body = Value::Array(batch.iter().map(|&n| device_json(prefix, n)).collect());
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let report = client
            .import_devices(&bytes, ImportFormat::Json, true, None)
            .map_err(|e| api_error(&client, "POST", IMPORT_PATH, e))?;
        for t in report.tokens.unwrap_or_default() {
            tokens.insert(t.id, t.token);
        }
        tracing::info!(devices = batch.len(), "registered simulated devices");
    }

    let to_rotate: Vec<&String> = wanted.iter().filter(|id| existing.contains(*id)).collect();
    if !to_rotate.is_empty() {
        tracing::info!(
            devices = to_rotate.len(),
            "issuing fresh tokens for devices already registered"
        );
        let per_worker = to_rotate.len().div_ceil(TOKEN_WORKERS);
        let issued = std::thread::scope(|scope| {
            let workers: Vec<_> = to_rotate
                .chunks(per_worker)
                .map(|ids| {
                    let client = &client;
                    scope.spawn(move || {
                        ids.iter()
                            .map(|id| issue_token(client, id).map(|t| ((*id).clone(), t)))
                            .collect::<Result<Vec<_>, SimError>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .map_err(|_| SimError::Task("a token worker panicked".into()))?
                })
                .collect::<Result<Vec<_>, SimError>>()
        })?;
        tokens.extend(issued.into_iter().flatten());
    }

    let mut fleet = Fleet::default();
    for (i, id) in wanted.into_iter().enumerate() {
        let token = tokens.remove(&id).ok_or_else(|| SimError::Api {
            method: "POST",
            url: format!("{}{IMPORT_PATH}", client.base_url()),
            reason: format!("no token for {id} in the answer"),
        })?;
        fleet.devices.push((id, token, MachineKind::for_index(i)));
    }
    Ok(fleet)
}

/// Where missing devices are imported, with their tokens.
const IMPORT_PATH: &str = "/api/devices/import?tokens=true";

/// A failed API call as the simulator reports it, with a hint where the
/// token lacks the role.
fn api_error(client: &Client, method: &'static str, path: &str, e: api_client::Error) -> SimError {
    let mut reason = match e {
        api_client::Error::Transport { ref message, .. } => message.clone(),
        ref other => other.to_string(),
    };
    if matches!(e.status(), Some(401 | 403)) {
        reason.push_str(" (an API token with the operator role is needed)");
    }
    SimError::Api {
        method,
        url: format!("{}{path}", client.base_url()),
        reason,
    }
}

/// The ids among `wanted` that are registered already.
fn existing(client: &Client, prefix: &str, wanted: &[String]) -> Result<HashSet<String>, SimError> {
    let wanted: HashSet<&str> = wanted.iter().map(String::as_str).collect();
    let filter = DeviceFilter {
        prefix: Some(prefix.to_string()),
        ..DeviceFilter::default()
    };
    let mut found = HashSet::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = client
            .list_devices(&filter, after.as_deref(), LIST_LIMIT)
            .map_err(|e| api_error(client, "GET", "/api/devices", e))?;
        found.extend(
            page.items
                .into_iter()
                .map(|d| d.id)
                .filter(|id| wanted.contains(id.as_str())),
        );
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(found)
}

/// A fresh token for a registered device; the old one dies at once.
fn issue_token(client: &Client, id: &str) -> Result<String, SimError> {
    client.issue_device_token(id, 0).map_err(|e| {
        api_error(
            client,
            "POST",
            &format!("/api/devices/{}/tokens", enc(id)),
            e,
        )
    })
}

/// Reads a CSV file of `id,token[,type]` lines (an `id,token` header line,
/// blank lines and `#` comments are skipped). Without a type the kind
/// cycles through [`MachineKind::ALL`].
pub fn read_credentials(path: &Path) -> Result<Fleet, SimError> {
    let err = |reason: String| SimError::Credentials {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    parse_credentials(&text).map_err(err)
}

/// Parses the text of a credentials file (see [`read_credentials`]).
pub fn parse_credentials(text: &str) -> Result<Fleet, String> {
    let mut fleet = Fleet::default();
    let mut seen = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if fleet.devices.is_empty()
            && cells.first() == Some(&"id")
            && cells.get(1) == Some(&"token")
        {
            continue;
        }
        let line_no = i + 1;
        let (id, token) = match cells.as_slice() {
            [id, token] | [id, token, _] if !id.is_empty() && !token.is_empty() => (*id, *token),
            _ => return Err(format!("line {line_no}: expected id,token[,type]")),
        };
        if id.contains(['/', '+', '#']) {
            return Err(format!(
                "line {line_no}: {id:?} cannot be a device id (no / + #)"
            ));
        }
        if !seen.insert(id.to_string()) {
            return Err(format!("line {line_no}: {id} appears twice"));
        }
        let kind = match cells.get(2) {
            Some(t) if !t.is_empty() => MachineKind::parse(t)
                .ok_or_else(|| format!("line {line_no}: unknown type {t:?}"))?,
            _ => MachineKind::for_index(fleet.devices.len()),
        };
        fleet
            .devices
            .push((id.to_string(), token.to_string(), kind));
    }
    if fleet.devices.is_empty() {
        return Err("no devices in the file".into());
    }
    Ok(fleet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_named_and_grouped_by_line() {
        assert_eq!(device_id("sim-", 1), "sim-0001");
        assert_eq!(device_id("sim-", 12345), "sim-12345");
        assert_eq!(
            device_json("sim-", 1),
            json!({
                "id": "sim-0001", "name": "Press 1", "type": "press",
                "labels": {"line": "1", "site": "demo"}, "groups": ["line-1"]
            })
        );
        let eleventh = device_json("f-", 11);
        assert_eq!(eleventh["name"], json!("Pump 11"));
        assert_eq!(eleventh["labels"]["line"], json!("2"));
        assert_eq!(eleventh["groups"], json!(["line-2"]));
    }

    #[test]
    fn credentials_files_parse() {
        let fleet = parse_credentials(
            "id,token\n# comment\n\nsim-0001, tok1\nsim-0002,tok2,compressor\nsim-0003,tok3,\n",
        )
        .unwrap();
        assert_eq!(
            fleet.devices,
            vec![
                ("sim-0001".into(), "tok1".into(), MachineKind::Press),
                ("sim-0002".into(), "tok2".into(), MachineKind::Compressor),
                ("sim-0003".into(), "tok3".into(), MachineKind::Pump),
            ]
        );
    }

    #[test]
    fn bad_credentials_files_are_refused() {
        for (text, needle) in [
            ("", "no devices"),
            ("a\n", "line 1"),
            ("a,\n", "line 1"),
            ("a,b\na,c\n", "twice"),
            ("a,b,robot\n", "unknown type"),
            ("a/b,t\n", "device id"),
            ("a,b,c,d\n", "line 1"),
        ] {
            let e = parse_credentials(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}

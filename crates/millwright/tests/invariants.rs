//! The architecture invariants a test can check (ARCHITECTURE.md,
//! "Invariants"), read from the source tree as text: the pure crates know
//! no runtime, no network and no clock, `anyhow` stays in the binary, only
//! `kv` and `tsdb` (and the allow-listed wire codecs) lay out bytes, and
//! the binary stays within its line budget.
//! A failure names the file and line that broke the rule.

use std::path::{Path, PathBuf};

/// Crates that take time as an argument and never open sockets, spawn
/// threads or read the clock.
const PURE: &[&str] = &[
    "iot-types",
    "mqtt-proto",
    "broker",
    "tsdb",
    "rules",
    "twin",
    "pki",
    "promql",
    "influxql",
];

/// The one file of a pure crate allowed to read the wall clock:
/// `iot_types::SystemClock`, which everything else is handed.
const CLOCK_READER: (&str, &str) = ("crates/iot-types/src/clock.rs", "SystemTime::now(");

/// Dependencies a pure crate must not have.
const IO_CRATES: &[&str] = &[
    "tokio",
    "tokio-rustls",
    "tokio-util",
    "hyper",
    "hyper-util",
    "axum",
    "ureq",
    "reqwest",
    "async-nats",
    "tokio-postgres",
    "futures-util",
];

/// Source text a pure crate must not contain outside its `#[cfg(test)]`
/// module (the clock, threads, sockets).
const FORBIDDEN: &[&str] = &[
    "Instant::now(",
    "SystemTime::now(",
    "thread::spawn(",
    "thread::Builder",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Names in the `[dependencies]` table of a Cargo.toml (not dev-dependencies).
fn dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = t == "[dependencies]";
            continue;
        }
        if inside {
            if let Some((name, _)) = t.split_once('=') {
                let name = name.trim().trim_end_matches(".workspace").trim();
                if !name.is_empty() && !name.starts_with('#') {
                    out.push(name.to_string());
                }
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The lines of a source file before its `#[cfg(test)]` module, comments
/// left out.
fn production_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .take_while(|(_, l)| l.trim() != "#[cfg(test)]")
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l))
}

#[test]
fn pure_crates_depend_on_no_runtime_or_network_crate() {
    let root = workspace();
    let mut broken = Vec::new();
    for c in PURE {
        let manifest = std::fs::read_to_string(root.join("crates").join(c).join("Cargo.toml"))
            .expect("manifest");
        for d in dependencies(&manifest) {
            if IO_CRATES.contains(&d.as_str()) {
                broken.push(format!("crates/{c} depends on {d}"));
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

/// The sans-io cores of the platform services: pure modules inside
/// crates that also have a thin threaded shell. Besides the clock, threads
/// and sockets, they name no runtime, channel or network-layer type.
const PURE_CORES: &[&str] = &["crates/fleet/src/core.rs", "crates/automation/src/core.rs"];

/// What a sans-io core must not contain besides [`FORBIDDEN`].
const CORE_FORBIDDEN: &[&str] = &["tokio::", "broker_net::", "mpsc::", "std::fs::", "File::"];

/// Lines of `files` (relative to the workspace) that contain one of `bad`.
fn violations(root: &Path, files: &[PathBuf], bad: &[&str]) -> Vec<String> {
    let mut broken = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).expect("source");
        let rel = f.strip_prefix(root).unwrap_or(f);
        for (n, line) in production_lines(&text) {
            for b in bad {
                if (rel, *b) == (Path::new(CLOCK_READER.0), CLOCK_READER.1) {
                    continue;
                }
                if line.contains(b) {
                    broken.push(format!("{}:{n}: {}", rel.display(), line.trim()));
                }
            }
        }
    }
    broken
}

#[test]
fn pure_crates_read_no_clock_spawn_no_thread_open_no_socket() {
    let root = workspace();
    let mut broken = Vec::new();
    for c in PURE {
        let mut files = Vec::new();
        rust_files(&root.join("crates").join(c).join("src"), &mut files);
        assert!(!files.is_empty(), "no sources for {c}");
        broken.extend(violations(&root, &files, FORBIDDEN));
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn service_cores_are_sans_io() {
    let root = workspace();
    let files: Vec<PathBuf> = PURE_CORES.iter().map(|f| root.join(f)).collect();
    for f in &files {
        assert!(f.is_file(), "{} is gone: update PURE_CORES", f.display());
    }
    let bad: Vec<&str> = FORBIDDEN.iter().chain(CORE_FORBIDDEN).copied().collect();
    let broken = violations(&root, &files, &bad);
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn anyhow_only_in_the_binary() {
    let root = workspace();
    let mut broken = Vec::new();
    for e in std::fs::read_dir(root.join("crates"))
        .expect("crates")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "millwright" {
            continue;
        }
        let Ok(manifest) = std::fs::read_to_string(e.path().join("Cargo.toml")) else {
            continue;
        };
        if dependencies(&manifest).iter().any(|d| d == "anyhow") {
            broken.push(name);
        }
    }
    assert!(broken.is_empty(), "anyhow outside the binary: {broken:?}");
}

/// Source text that lays out bytes by hand: fixed-width integers to or
/// from bytes, the `bytes`/`byteorder` integer writers and readers,
/// varint bit masks, and fixed-width numbers parsed back out of key text.
/// Only `kv` and `tsdb` own byte layouts (ARCHITECTURE.md, "Invariants");
/// a store crate asks `kv` (its codecs, `kv::seq_id`) instead.
const BYTE_LAYOUT: &[&str] = &[
    "to_be_bytes(",
    "from_be_bytes(",
    "to_le_bytes(",
    "from_le_bytes(",
    "to_ne_bytes(",
    "from_ne_bytes(",
    "byteorder",
    "put_u16",
    "put_u32",
    "put_u64",
    "get_u16",
    "get_u32",
    "get_u64",
    "& 0x7f",
    "| 0x80",
    "0x80 |",
    "from_str_radix(",
];

/// The crates that own byte layouts.
const LAYOUT_OWNERS: &[&str] = &["kv", "tsdb"];

/// Other places allowed to lay out bytes, each with its reason: wire
/// codecs of protocols this platform speaks, never a stored format.
const LAYOUT_ALLOWED: &[(&str, &str)] = &[
    (
        "crates/mqtt-proto/",
        "the MQTT codec: the protocol's own wire bytes",
    ),
    ("crates/pki/src/pkcs8.rs", "DER lengths of PKCS#8 keys"),
    (
        "crates/pki/src/issue.rs",
        "a DER serial number's leading byte",
    ),
    (
        "crates/bench/src/load.rs",
        "the load generator's in-payload send stamp, read back by its own subscribers",
    ),
];

/// The `(line, text)` of `text`'s production lines that lay out bytes.
fn byte_layout_lines(text: &str) -> Vec<(usize, String)> {
    production_lines(text)
        .filter(|(_, l)| BYTE_LAYOUT.iter().any(|b| l.contains(b)))
        .map(|(n, l)| (n, l.trim().to_string()))
        .collect()
}

#[test]
fn only_kv_and_tsdb_define_byte_layouts() {
    let root = workspace();
    let mut broken = Vec::new();
    let mut seen = 0;
    for e in std::fs::read_dir(root.join("crates"))
        .expect("crates")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if LAYOUT_OWNERS.contains(&name.as_str()) {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&e.path().join("src"), &mut files);
        for f in files {
            seen += 1;
            let rel = f.strip_prefix(&root).unwrap_or(&f).to_string_lossy();
            let rel = rel.replace('\\', "/");
            if LAYOUT_ALLOWED.iter().any(|(p, _)| rel.starts_with(p)) {
                continue;
            }
            let text = std::fs::read_to_string(&f).expect("source");
            for (n, line) in byte_layout_lines(&text) {
                broken.push(format!("{rel}:{n}: {line}"));
            }
        }
    }
    assert!(seen > 100, "only {seen} source files read");
    assert!(
        broken.is_empty(),
        "byte layouts outside kv and tsdb (move the encoding into kv): {broken:#?}"
    );
}

#[test]
fn the_checks_themselves_see_a_violation() {
    // The readers must not be blind: a manifest and a file that break the
    // rules are caught.
    let deps = dependencies("[package]\nname = \"x\"\n[dependencies]\ntokio.workspace = true\nserde = \"1\"\n[dev-dependencies]\nproptest = \"1\"\n");
    assert_eq!(deps, ["tokio", "serde"]);
    let text = "fn f() { let t = std::time::Instant::now(); }\n// Instant::now( in a comment\n#[cfg(test)]\nmod tests { fn g() { std::thread::spawn(|| ()); } }\n";
    let hits: Vec<usize> = production_lines(text)
        .filter(|(_, l)| FORBIDDEN.iter().any(|b| l.contains(b)))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(hits, [1]);
    // A key laid out by hand is seen; the same in a comment or a test
    // module is not.
    let text = "fn key(seq: u64) -> [u8; 8] {\n    seq.to_be_bytes()\n}\n// u64::from_str_radix(hex, 16)\nfn id(h: &str) -> u64 { u64::from_str_radix(h, 16).unwrap_or(0) }\n#[cfg(test)]\nmod tests { fn g() { 1u32.to_le_bytes(); } }\n";
    let hits: Vec<usize> = byte_layout_lines(text).iter().map(|(n, _)| *n).collect();
    assert_eq!(hits, [2, 5]);
}

/// Lines the binary's sources may hold: it wires crates together and holds
/// no logic of its own (ARCHITECTURE.md, "The binary wires, nothing more").
const BINARY_LINE_BUDGET: usize = 800;

#[test]
fn the_binary_stays_within_its_line_budget() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates/millwright/src"), &mut files);
    assert!(!files.is_empty(), "no sources for the binary");
    let mut sizes: Vec<(usize, PathBuf)> = files
        .into_iter()
        .map(|f| {
            let n = std::fs::read_to_string(&f).expect("source").lines().count();
            (n, f)
        })
        .collect();
    let total: usize = sizes.iter().map(|(n, _)| n).sum();
    sizes.sort();
    assert!(
        total <= BINARY_LINE_BUDGET,
        "crates/millwright/src has {total} lines, over the budget of {BINARY_LINE_BUDGET}: move logic into a crate (largest files: {:?})",
        sizes.iter().rev().take(3).collect::<Vec<_>>()
    );
}

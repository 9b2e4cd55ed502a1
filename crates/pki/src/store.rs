//! The CA's files: `ca.pem` (certificate) and `ca.key` (private key, mode
//! 0600), loaded if present and created together if both are absent.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{CertificateAuthority, PkiError};

/// File name of the CA certificate inside the CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside the CA directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";

impl CertificateAuthority {
    /// Loads `dir/ca.pem` and `dir/ca.key`, or, when both are absent, creates
    /// a new CA (see [`CertificateAuthority::from_pem`] for what is accepted
    /// and the crate documentation for what is created) and saves it there.
    ///
    /// `dir` is created (mode 0700) if missing. The key file is created with
    /// mode 0600 from the start. Each file is written to a temporary name,
    /// synced and renamed, so a crash never leaves a truncated file; one file
    /// present without the other is an error naming the missing one.
    pub fn load_or_create(dir: &Path, now_ms: u64) -> Result<Self, PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (exists(&cert_path)?, exists(&key_path)?) {
            (true, true) => load(&cert_path, &key_path),
            (false, false) => create(dir, &cert_path, &key_path, now_ms),
            (true, false) => Err(PkiError::CaFileMissing {
                missing: key_path,
                present: cert_path,
            }),
            (false, true) => Err(PkiError::CaFileMissing {
                missing: cert_path,
                present: key_path,
            }),
        }
    }
}

fn load(cert_path: &Path, key_path: &Path) -> Result<CertificateAuthority, PkiError> {
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    warn_if_key_readable_by_others(key_path);
    CertificateAuthority::from_pem_named(
        &cert_pem,
        &key_pem,
        &format!("CA certificate {}", cert_path.display()),
        &format!("CA private key {}", key_path.display()),
    )
}

fn create(
    dir: &Path,
    cert_path: &Path,
    key_path: &Path,
    now_ms: u64,
) -> Result<CertificateAuthority, PkiError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error("create directory", dir))?;
    let ca = CertificateAuthority::generate(now_ms)?;
    // The key first: a crash between the two renames leaves a key without a
    // certificate, which load_or_create reports instead of replacing.
    write_atomically(dir, key_path, ca.key_pem().as_bytes(), 0o600)?;
    write_atomically(dir, cert_path, ca.cert_pem().as_bytes(), 0o644)?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync directory", dir))?;
    tracing::info!(dir = %dir.display(), "created a new certificate authority");
    Ok(ca)
}

/// Writes `path` through a temporary file created with `mode` (never a wider
/// mode later narrowed), synced before the rename.
fn write_atomically(dir: &Path, path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("remove stale file", &tmp)(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_error("create", &tmp))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io_error("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_error("rename into place", path))
}

fn warn_if_key_readable_by_others(key_path: &Path) {
    if let Ok(meta) = fs::metadata(key_path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "CA private key {} has mode {mode:o}; it should be 0600",
                key_path.display()
            );
        }
    }
}

fn exists(path: &Path) -> Result<bool, PkiError> {
    path.try_exists().map_err(io_error("check", path))
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(io_error("read", path))
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PkiError {
    let path: PathBuf = path.to_owned();
    move |source| PkiError::Io {
        action,
        path,
        source,
    }
}

//! Device certificates and the CA certificate.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pki::PkiError;
use registry::CertRecord;
use serde::Serialize;

use crate::audit::Note;
use crate::error::ApiError;
use crate::extract::{Object, PathId, PathSerial};
use crate::fields::Fields;
use crate::render::{self, created};
use crate::{blocking, ApiState};

/// Longest validity a request may ask for, in days.
const MAX_DAYS: u64 = 3650;

/// A certificate record as JSON (times in Unix milliseconds).
#[derive(Serialize)]
struct CertDto<'a> {
    serial: &'a str,
    device_id: &'a str,
    issued_at: u64,
    not_after: u64,
    revoked_at: Option<u64>,
}

impl<'a> CertDto<'a> {
    fn new(c: &'a CertRecord) -> CertDto<'a> {
        CertDto {
            serial: &c.serial_hex,
            device_id: &c.device_id,
            issued_at: c.issued_at_ms,
            not_after: c.not_after_ms,
            revoked_at: c.revoked_at_ms,
        }
    }
}

fn no_ca() -> ApiError {
    ApiError::Unavailable("this server has no certificate authority".into())
}

/// The CA, or 503.
pub(crate) fn require_ca(st: &ApiState) -> Result<Arc<pki::CertificateAuthority>, ApiError> {
    st.ca.clone().ok_or_else(no_ca)
}

/// `days` of a certificate request: 1 to `max`, the server's default when
/// absent.
pub(crate) fn days(st: &ApiState, f: &Fields, max: u64) -> Result<u32, ApiError> {
    match f.uint("days", max)? {
        Some(0) => Err(ApiError::body("days", "must be at least 1")),
        Some(d) => Ok(u32::try_from(d).unwrap_or(u32::MAX)),
        None => Ok(st.device_cert_days),
    }
}

/// The 201 answer of an issued certificate, audited with its serial.
pub(crate) fn issued(
    cert: pki::IssuedCert,
    ca_certificate: String,
    target: &str,
    location: &str,
) -> Result<Response, ApiError> {
    let dto = api_types::IssuedCertificate {
        certificate: cert.cert_pem,
        private_key: cert.key_pem,
        ca_certificate,
        serial: cert.serial_hex,
        not_after: cert.not_after_ms,
    };
    let resp = created(&dto, location)?;
    Ok(Note::target(target)
        .with_details(serde_json::json!({ "serial": dto.serial }))
        .attach(resp))
}

/// A CA error caused by the request (400 naming `field`) or not (500).
fn pki_error(e: PkiError) -> ApiError {
    match e {
        PkiError::InvalidCsr(_) => ApiError::body("csr", e.to_string()),
        PkiError::InvalidDeviceId { .. } => ApiError::body("id", e.to_string()),
        PkiError::InvalidValidity(_) => ApiError::body("days", e.to_string()),
        other => ApiError::Internal(format!("certificate authority: {other}")),
    }
}

/// `POST /api/devices/{id}/certificates`: `{"csr"?, "days"?}` -> 201
/// `{"certificate", "private_key"?, "ca_certificate", "serial",
/// "not_after"}`. Without a CSR the key is generated here and returned
/// once.
pub(crate) async fn issue(
    State(st): State<Arc<ApiState>>,
    PathId(id): PathId,
    Object(f): Object,
) -> Result<Response, ApiError> {
    f.only(&["csr", "days"])?;
    let csr = f.string("csr")?;
    let days = days(&st, &f, MAX_DAYS)?;
    let now = st.now_ms();
    let st2 = st.clone();
    let id2 = id.clone();
    let (cert, ca_pem) = blocking(move || {
        let ca = require_ca(&st2)?;
        if st2.devices.get_device(&st2.namespace, &id2)?.is_none() {
            return Err(ApiError::Missing(format!("device {id2:?} not found")));
        }
        let cert = match &csr {
            Some(csr) => ca.sign_csr(csr, &id2, days, now),
            None => ca.issue_device_cert(&id2, days, now),
        }
        .map_err(pki_error)?;
        st2.devices.record_certificate(
            &st2.namespace,
            &id2,
            &cert.serial_hex,
            cert.not_after_ms,
            now,
        )?;
        Ok((cert, ca.cert_pem().to_string()))
    })
    .await?;
    issued(
        cert,
        ca_pem,
        &id,
        &format!("/api/devices/{id}/certificates"),
    )
}

/// `GET /api/devices/{id}/certificates`: the device's certificate records.
pub(crate) async fn list(
    State(st): State<Arc<ApiState>>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let certs = st
        .on_devices(move |d, ns| {
            if d.get_device(ns, &id)?.is_none() {
                return Err(ApiError::Missing(format!("device {id:?} not found")));
            }
            Ok(d.list_certificates(ns, &id)?)
        })
        .await?;
    render::items(certs.iter().map(CertDto::new).collect())
}

/// `POST /api/certificates/{serial}/revoke`: 200 with the record; drops the
/// device's live sessions. An unknown serial is 404 (and still remembered
/// as revoked, should it ever be presented).
pub(crate) async fn revoke(
    State(st): State<Arc<ApiState>>,
    PathSerial(serial): PathSerial,
) -> Result<Response, ApiError> {
    let now = st.now_ms();
    let s2 = serial.clone();
    let rec = st
        .on_devices(move |d, _| Ok(d.revoke_certificate(&s2, now)?))
        .await?
        .ok_or_else(|| ApiError::Missing(format!("certificate {serial:?} not found")))?;
    let n = st.drop_sessions(&rec.device_id);
    tracing::info!(serial = %rec.serial_hex, device = %rec.device_id, sessions = n, "certificate revoked");
    let resp = render::json(&CertDto::new(&rec), None)?;
    Ok(Note::target(&rec.serial_hex)
        .with_details(serde_json::json!({ "device": rec.device_id }))
        .attach(resp))
}

/// `GET /api/ca`: the CA certificate, PEM.
pub(crate) async fn ca(State(st): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let ca = require_ca(&st)?;
    let mut resp = (StatusCode::OK, ca.cert_pem().to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    Ok(resp)
}

//! Device certificates and the CA certificate.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pki::PkiError;
use registry::CertRecord;
use serde::Serialize;

use crate::audit::Note;
use crate::devices::{created, path_id};
use crate::error::ApiError;
use crate::fields::read_object;
use crate::{blocking, render, ApiState, REASON_NOT_AUTHORIZED};

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
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let f = read_object(&headers, body, st.max_body_bytes).await?;
    f.only(&["csr", "days"])?;
    let csr = f.string("csr")?;
    let days = match f.uint("days", MAX_DAYS)? {
        Some(0) => return Err(ApiError::body("days", "must be at least 1")),
        Some(d) => u32::try_from(d).unwrap_or(u32::MAX),
        None => st.device_cert_days,
    };
    let now = st.now_ms();
    let st2 = st.clone();
    let id2 = id.clone();
    let issued = blocking(move || {
        let ca = st2.ca.clone().ok_or_else(no_ca)?;
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
    let (cert, ca_pem) = issued;
    let dto = api_types::IssuedCertificate {
        certificate: cert.cert_pem.clone(),
        private_key: cert.key_pem.clone(),
        ca_certificate: ca_pem,
        serial: cert.serial_hex.clone(),
        not_after: cert.not_after_ms,
    };
    let resp = created(&dto, &format!("/api/devices/{id}/certificates"))?;
    Ok(Note::target(&id)
        .with_details(serde_json::json!({ "serial": cert.serial_hex }))
        .attach(resp))
}

/// `GET /api/devices/{id}/certificates`: the device's certificate records.
pub(crate) async fn list(
    State(st): State<Arc<ApiState>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let st2 = st.clone();
    let certs = blocking(move || {
        if st2.devices.get_device(&st2.namespace, &id)?.is_none() {
            return Err(ApiError::Missing(format!("device {id:?} not found")));
        }
        Ok(st2.devices.list_certificates(&st2.namespace, &id)?)
    })
    .await?;
    #[derive(Serialize)]
    struct ListDto<'a> {
        items: Vec<CertDto<'a>>,
    }
    render::json(
        &ListDto {
            items: certs.iter().map(CertDto::new).collect(),
        },
        None,
    )
}

/// `POST /api/certificates/{serial}/revoke`: 200 with the record; drops the
/// device's live sessions. An unknown serial is 404 (and still remembered
/// as revoked, should it ever be presented).
pub(crate) async fn revoke(
    State(st): State<Arc<ApiState>>,
    serial: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let serial = serial
        .map(|Path(s)| s)
        .map_err(|e| ApiError::param("serial", e.body_text()))?;
    let now = st.now_ms();
    let st2 = st.clone();
    let s2 = serial.clone();
    let rec = blocking(move || Ok(st2.devices.revoke_certificate(&s2, now)?))
        .await?
        .ok_or_else(|| ApiError::Missing(format!("certificate {serial:?} not found")))?;
    let n = st.live.disconnect(&rec.device_id, REASON_NOT_AUTHORIZED);
    tracing::info!(serial = %rec.serial_hex, device = %rec.device_id, sessions = n, "certificate revoked");
    let resp = render::json(&CertDto::new(&rec), None)?;
    Ok(Note::target(&rec.serial_hex)
        .with_details(serde_json::json!({ "device": rec.device_id }))
        .attach(resp))
}

/// `GET /api/ca`: the CA certificate, PEM.
pub(crate) async fn ca(State(st): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let ca = st.ca.as_ref().ok_or_else(no_ca)?;
    let mut resp = (StatusCode::OK, ca.cert_pem().to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    Ok(resp)
}

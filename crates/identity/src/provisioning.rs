//! Zero-touch provisioning: a device holding a claim credential asks for
//! its own identity.
//!
//! Over MQTT: connect with any username and the claim token as password,
//! client id = the device's serial (no `/`, `+`, `#`); subscribe to
//! `$provision/{client id}/+`; publish a JSON [`ProvisionRequest`] to
//! `$provision/{client id}/request`. The answer arrives on
//! `$provision/{client id}/accepted` (a [`ProvisionReply`]: the device id,
//! and its token, or the certificate signed for the CSR it sent with the
//! CA certificate) or `$provision/{client id}/rejected` (`{"code",
//! "message"}` with an HTTP-like code: 400 bad request, 403 refused by the
//! claim or its template, 409 the device exists, 500 server error). A
//! `correlation_data` property is echoed. Then the device reconnects with
//! its new identity. Over HTTP the same request is `POST /api/provision`
//! with `Authorization: Bearer <claim token>`.

use std::sync::Arc;

use broker::bus::Bus;
use broker::{StoredMessage, TapMessage};
use iot_types::device_topics::{self, ProvisionStep};
use registry::{Credential, DeviceStorage, RegistryError};
use serde::{Deserialize, Serialize};

/// Messages the provisioning service taps.
pub const PROVISION_TAP: &str = device_topics::PROVISION_REQUEST_FILTER;

/// What a device asks for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRequest {
    /// The id to register (default: the MQTT client id).
    pub device_id: Option<String>,
    /// A PEM certificate signing request: answered with a certificate
    /// instead of a token.
    pub csr: Option<String>,
}

/// What a provisioned device gets.
#[derive(Debug, Clone, Serialize)]
pub struct ProvisionReply {
    pub device_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
}

/// Why provisioning was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProvisionError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl ProvisionError {
    /// The HTTP-like status code of the refusal.
    pub fn code(&self) -> u16 {
        match self {
            ProvisionError::BadRequest(_) => 400,
            ProvisionError::Refused(_) => 403,
            ProvisionError::Conflict(_) => 409,
            ProvisionError::Internal(_) => 500,
        }
    }
}

impl From<RegistryError> for ProvisionError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::AlreadyExists { .. } => ProvisionError::Conflict(e.to_string()),
            RegistryError::Invalid { .. } => ProvisionError::Refused(e.to_string()),
            RegistryError::Conflict(_) | RegistryError::NotFound { .. } => {
                ProvisionError::Refused(e.to_string())
            }
            RegistryError::Storage(_) => ProvisionError::Internal(e.to_string()),
        }
    }
}

/// Registers a device for claim `claim_id` (already authenticated), by a
/// client that connected over MQTT with `client_id` (`None` over HTTP); the
/// device id defaults to the client id.
/// With a CSR, the certificate is signed before the device is created (a
/// bad CSR creates nothing) and recorded after.
pub fn provision(
    registry: &dyn DeviceStorage,
    ca: Option<&pki::CertificateAuthority>,
    claim_id: &str,
    request: ProvisionRequest,
    client_id: Option<&str>,
    cert_days: u32,
    now_ms: u64,
) -> Result<ProvisionReply, ProvisionError> {
    let Some(device_id) = request
        .device_id
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| client_id.map(str::to_string))
    else {
        return Err(ProvisionError::BadRequest("device_id: required".into()));
    };
    let signed = match &request.csr {
        Some(csr) => {
            let ca = ca.ok_or_else(|| {
                ProvisionError::BadRequest("this server has no certificate authority".into())
            })?;
            Some(
                ca.sign_csr(csr, &device_id, cert_days, now_ms)
                    .map_err(|e| ProvisionError::BadRequest(format!("csr: {e}")))?,
            )
        }
        None => None,
    };
    let credential = if signed.is_some() {
        Credential::Certificate
    } else {
        Credential::Token
    };
    let done = registry.provision_as(claim_id, &device_id, client_id, credential, now_ms)?;
    let mut reply = ProvisionReply {
        device_id: done.device.id.clone(),
        token: done.token,
        certificate: None,
        ca_certificate: None,
    };
    if let (Some(cert), Some(ca)) = (signed, ca) {
        registry.record_certificate(
            &done.device.namespace,
            &done.device.id,
            &cert.serial_hex,
            cert.not_after_ms,
            now_ms,
        )?;
        reply.certificate = Some(cert.cert_pem);
        reply.ca_certificate = Some(ca.cert_pem().to_string());
    }
    tracing::info!(device = %reply.device_id, claim = claim_id, "device provisioned");
    Ok(reply)
}

/// Serves MQTT provisioning requests tapped from the broker until the
/// channel closes, answering through `bus` (the broker). Each request runs
/// on the blocking pool (hashing and signing take milliseconds).
pub async fn serve_provisioning<B: Bus + 'static, C: iot_types::Clock + ?Sized + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<TapMessage>,
    bus: B,
    registry: Arc<dyn DeviceStorage>,
    ca: Option<Arc<pki::CertificateAuthority>>,
    cert_days: u32,
    clock: Arc<C>,
) {
    let clock = iot_types::shared(clock);
    let bus: Arc<dyn Bus> = Arc::new(bus);
    while let Some(tap) = rx.recv().await {
        let registry = registry.clone();
        let ca = ca.clone();
        let clock = clock.clone();
        let bus = bus.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let client_id = tap.client_id.to_string();
            let result = match tap
                .principal
                .as_deref()
                .and_then(|p| p.strip_prefix("claim:"))
            {
                None => Err(ProvisionError::Refused(
                    "provisioning needs a claim credential".into(),
                )),
                Some(claim_id) => match serde_json::from_slice::<ProvisionRequest>(
                    if tap.message.payload.is_empty() {
                        b"{}"
                    } else {
                        &tap.message.payload
                    },
                ) {
                    Ok(req) => provision(
                        &*registry,
                        ca.as_deref(),
                        claim_id,
                        req,
                        Some(&client_id),
                        cert_days,
                        clock.now().as_millis(),
                    ),
                    Err(e) => Err(ProvisionError::BadRequest(format!("bad request JSON: {e}"))),
                },
            };
            let (step, body) = match result {
                Ok(reply) => (ProvisionStep::Accepted, serde_json::to_vec(&reply)),
                Err(e) => {
                    tracing::info!(client_id = %client_id, code = e.code(), error = %e, "provisioning refused");
                    (
                        ProvisionStep::Rejected,
                        serde_json::to_vec(
                            &serde_json::json!({"code": e.code(), "message": e.to_string()}),
                        ),
                    )
                }
            };
            let message = StoredMessage {
                correlation_data: tap.message.correlation_data.clone(),
                ..StoredMessage::platform_json(
                    device_topics::provision(&client_id, step),
                    body.unwrap_or_default(),
                )
            };
            bus.publish(message);
        });
        if let Err(e) = answer.await {
            tracing::warn!(error = %e, "provisioning task failed");
        }
    }
}

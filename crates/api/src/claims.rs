//! Claims (provisioning credentials) and `POST /api/provision`, where a
//! device holding a claim token registers itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use registry::{Claim, ClaimAuth, ProvisioningTemplate};
use serde::Serialize;

use crate::audit::Note;
use crate::auth::bearer;
use crate::certs::{days, issued, require_ca};
use crate::error::ApiError;
use crate::extract::{Object, PathId};
use crate::fields::read_body;
use crate::render::{self, created};
use crate::{blocking, ApiState};

#[derive(Serialize)]
struct TemplateDto<'a> {
    #[serde(rename = "type")]
    device_type: Option<&'a str>,
    labels: &'a BTreeMap<String, String>,
    groups: &'a [String],
    id_pattern: Option<&'a str>,
    allow_list: Option<&'a [String]>,
    bind_client_id: bool,
}

/// A claim as JSON; never its token.
#[derive(Serialize)]
struct ClaimDto<'a> {
    id: &'a str,
    name: &'a str,
    template: TemplateDto<'a>,
    max_uses: Option<u32>,
    uses: u32,
    expires_at: Option<u64>,
    revoked: bool,
    created_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
}

impl<'a> ClaimDto<'a> {
    fn new(c: &'a Claim, token: Option<&'a str>) -> ClaimDto<'a> {
        let t = &c.template;
        ClaimDto {
            id: &c.id,
            name: &c.name,
            template: TemplateDto {
                device_type: t.device_type.as_deref(),
                labels: &t.labels,
                groups: &t.groups,
                id_pattern: t.id_pattern.as_deref(),
                allow_list: t.allow_list.as_deref(),
                bind_client_id: t.bind_client_id,
            },
            max_uses: c.max_uses,
            uses: c.uses,
            expires_at: c.expires_at_ms,
            revoked: c.revoked,
            created_at: c.created_at_ms,
            token,
        }
    }
}

/// `POST /api/claims`: `{"name", "template"?: {"type"?, "labels"?,
/// "groups"?, "id_pattern"?, "allow_list"?, "bind_client_id"?}, "max_uses"?,
/// "expires_at"?}`
/// -> 201 with the claim and its `token` (shown once).
pub(crate) async fn create(
    State(st): State<Arc<ApiState>>,
    Object(f): Object,
) -> Result<Response, ApiError> {
    f.only(&["name", "template", "max_uses", "expires_at"])?;
    let name = f.required_string("name")?;
    let mut template = ProvisioningTemplate::default();
    if let Some(t) = f.nested("template")? {
        t.only(&[
            "type",
            "labels",
            "groups",
            "id_pattern",
            "allow_list",
            "bind_client_id",
        ])?;
        template.device_type = t.string("type")?;
        template.labels = t.string_map("labels")?.unwrap_or_default();
        template.groups = t.string_list("groups")?.unwrap_or_default();
        template.id_pattern = t.string("id_pattern")?;
        template.allow_list = t.string_list("allow_list")?;
        template.bind_client_id = t.bool("bind_client_id")?.unwrap_or(false);
    }
    let max_uses = f
        .uint("max_uses", u64::from(u32::MAX))?
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let now = st.now_ms();
    let expires_at = f.future_instant("expires_at", now)?;
    let (claim, token) = st
        .on_devices(move |d, ns| {
            d.create_claim(ns, &name, template, max_uses, expires_at, now)
                .map_err(|e| match ApiError::from(e) {
                    // The registry names the template's members `template.*`
                    // and the type `device_type`; the API calls it `type`.
                    ApiError::BadBody {
                        field: Some(f),
                        reason,
                    } => ApiError::BadBody {
                        field: Some(f.replace("device_type", "type")),
                        reason,
                    },
                    other => other,
                })
        })
        .await?;
    let resp = created(
        &ClaimDto::new(&claim, Some(&token)),
        &format!("/api/claims/{}", claim.id),
    )?;
    Ok(Note::target(&claim.id).attach(resp))
}

/// `GET /api/claims`: every claim of the namespace, revoked ones included.
pub(crate) async fn list(State(st): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let claims = st.on_devices(|d, ns| Ok(d.list_claims(ns)?)).await?;
    render::items(claims.iter().map(|c| ClaimDto::new(c, None)).collect())
}

/// `DELETE /api/claims/{id}`: revokes the claim (it stays listed) and drops
/// the sessions connected with it; 204.
pub(crate) async fn revoke(
    State(st): State<Arc<ApiState>>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let id2 = id.clone();
    if !st
        .on_devices(move |d, ns| Ok(d.revoke_claim(ns, &id2)?))
        .await?
    {
        return Err(ApiError::Missing(format!("claim {id:?} not found")));
    }
    st.drop_sessions(&format!("claim:{id}"));
    Ok(render::no_content())
}

/// `POST /api/claims/{id}/certificate`: `{"days"?}` -> 201 with a claim
/// certificate (CN `$claim-<id>`) and its key, for fleets that provision
/// over mTLS instead of with the claim token. Revoking the claim makes it
/// useless.
pub(crate) async fn certificate(
    State(st): State<Arc<ApiState>>,
    PathId(id): PathId,
    Object(f): Object,
) -> Result<Response, ApiError> {
    f.only(&["days"])?;
    let days = days(&st, &f, 36_500)?;
    let now = st.now_ms();
    let st2 = st.clone();
    let id2 = id.clone();
    let (cert, ca_pem) = blocking(move || {
        let ca = require_ca(&st2)?;
        match st2.devices.get_claim(&st2.namespace, &id2)? {
            None => return Err(ApiError::Missing(format!("claim {id2:?} not found"))),
            Some(c) if c.revoked => return Err(ApiError::body("id", "the claim is revoked")),
            Some(_) => {}
        }
        let cert = ca
            .issue_device_cert(&identity::claim_cert_subject(&id2), days, now)
            .map_err(|e| ApiError::Internal(format!("cannot issue the certificate: {e}")))?;
        Ok((cert, ca.cert_pem().to_string()))
    })
    .await?;
    issued(cert, ca_pem, &id, &format!("/api/claims/{id}"))
}

/// Largest provisioning body: a device id and a CSR (a few KiB).
const PROVISION_BODY_LIMIT: usize = 64 * 1024;

/// `POST /api/provision` with `Authorization: Bearer <claim token>`:
/// `{"device_id", "csr"?}` -> 201 with the device id and its token, or
/// the certificate signed for the CSR and the CA certificate. The audit
/// actor is `claim:<claim id>` once the claim is known.
pub(crate) async fn provision(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut note = Note::default();
    let r = provision_inner(&st, &headers, body, &mut note).await;
    note.outcome(r)
}

async fn provision_inner(
    st: &Arc<ApiState>,
    headers: &HeaderMap,
    body: Body,
    note: &mut Note,
) -> Result<Response, ApiError> {
    // The claim is checked before the body is read, and the body is
    // small: a device id and perhaps a CSR.
    let token = bearer(headers).ok_or(ApiError::Unauthorized)?;
    let now = st.now_ms();
    let claim = st
        .on_devices(move |d, _| Ok(d.authenticate_claim(token.as_bytes(), now)?))
        .await?;
    let claim = match claim {
        ClaimAuth::Ok(c) => c,
        ClaimAuth::Unknown => return Err(ApiError::Unauthorized),
        ClaimAuth::Revoked => return Err(ApiError::Forbidden("the claim is revoked".into())),
        ClaimAuth::Expired => return Err(ApiError::Forbidden("the claim has expired".into())),
        ClaimAuth::Exhausted => {
            return Err(ApiError::Forbidden("the claim has no uses left".into()))
        }
    };
    *note = Note::actor(&format!("claim:{}", claim.id));
    let data = read_body(headers, body, st.max_body_bytes.min(PROVISION_BODY_LIMIT)).await?;
    let request: identity::ProvisionRequest =
        serde_json::from_slice(&data).map_err(|e| ApiError::BadBody {
            field: None,
            reason: format!("expected {{\"device_id\", \"csr\"?}}: {e}"),
        })?;
    let device_id = match request.device_id.as_deref() {
        Some(d) if !d.is_empty() => d.to_string(),
        _ => return Err(ApiError::body("device_id", "required")),
    };
    *note = std::mem::take(note).with_target(&device_id);
    let st2 = st.clone();
    let reply = blocking(move || {
        identity::provision(
            &*st2.devices,
            st2.ca.as_deref(),
            &claim.id,
            request,
            None,
            st2.device_cert_days,
            now,
        )
        .map_err(|e| {
            let msg = e.to_string();
            match e.code() {
                400 => ApiError::BadBody {
                    field: None,
                    reason: msg,
                },
                403 => ApiError::Forbidden(msg),
                409 => ApiError::AlreadyExists(msg),
                _ => ApiError::Internal(msg),
            }
        })
    })
    .await?;
    created(&reply, &format!("/api/devices/{}", reply.device_id))
}

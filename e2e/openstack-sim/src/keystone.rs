//! Keystone v3: tokens (methods `password` and `application_credential`), the service
//! catalog, and the token check Nova and Magnum do (keystonemiddleware's part).

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use serde_json::{Value, json};
use std::collections::HashMap;

use crate::Sim;
use crate::state::{State as Cloud, Token, User};
use crate::time;

pub(crate) fn router() -> Router<Sim> {
    Router::new()
        .route("/identity", get(versions))
        .route("/identity/", get(versions))
        .route("/identity/v3", get(version))
        .route("/identity/v3/", get(version))
        .route(
            "/identity/v3/auth/tokens",
            get(validate_token).post(issue_token).delete(revoke_token),
        )
}

/// Keystone's error shape: `{"error": {"code", "message", "title"}}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = json!({"error": {"code": status.as_u16(), "message": message, "title": title}});
    (status, axum::Json(body)).into_response()
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "The request you have made requires authentication.",
    )
}

fn version_doc(sim: &Sim) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/", sim.auth_url())}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]
    })
}

async fn versions(State(sim): State<Sim>) -> Response {
    // Keystone answers its root with 300 Multiple Choices.
    let body = json!({"versions": {"values": [version_doc(&sim)]}});
    (StatusCode::MULTIPLE_CHOICES, axum::Json(body)).into_response()
}

async fn version(State(sim): State<Sim>) -> Response {
    axum::Json(json!({"version": version_doc(&sim)})).into_response()
}

/// An authentication failure: the status and Keystone's message.
struct Refusal(StatusCode, String);

impl Refusal {
    fn bad(msg: &str) -> Refusal {
        Refusal(
            StatusCode::BAD_REQUEST,
            format!(
                "{msg} The server could not comply with the request since it is either malformed or otherwise incorrect."
            ),
        )
    }

    fn unauthorized() -> Refusal {
        Refusal(
            StatusCode::UNAUTHORIZED,
            "The request you have made requires authentication.".into(),
        )
    }
}

/// Who authenticated and for which project.
struct Authenticated {
    user_id: String,
    project_id: String,
    methods: Vec<&'static str>,
    app_cred_id: Option<String>,
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A user by `{id}` or by `{name, domain: {id | name}}`.
fn find_user<'a>(st: &'a Cloud, user: &Value) -> Result<&'a User, Refusal> {
    if let Some(id) = str_at(user, "id") {
        return st.users.get(id).ok_or_else(Refusal::unauthorized);
    }
    let name = str_at(user, "name")
        .ok_or_else(|| Refusal::bad("Expecting to find id or name in user."))?;
    let domain = user
        .get("domain")
        .ok_or_else(|| Refusal::bad("Expecting to find domain in user."))?;
    let (did, dname) = (str_at(domain, "id"), str_at(domain, "name"));
    st.users
        .values()
        .find(|u| u.name == name && u.domain.matches(did, dname))
        .ok_or_else(Refusal::unauthorized)
}

fn authenticate(st: &Cloud, body: &Value) -> Result<Authenticated, Refusal> {
    let auth = body
        .get("auth")
        .ok_or_else(|| Refusal::bad("Expecting to find auth in request body."))?;
    let identity = auth
        .get("identity")
        .ok_or_else(|| Refusal::bad("Expecting to find identity in auth."))?;
    let methods: Vec<&str> = identity
        .get("methods")
        .and_then(Value::as_array)
        .ok_or_else(|| Refusal::bad("Expecting to find methods in identity."))?
        .iter()
        .filter_map(Value::as_str)
        .collect();

    let (user, bound_project, method, app_cred_id) = if methods.contains(&"password") {
        let user = identity
            .pointer("/password/user")
            .ok_or_else(|| Refusal::bad("Expecting to find user in password."))?;
        let password = str_at(user, "password").ok_or_else(Refusal::unauthorized)?;
        let found = find_user(st, user)?;
        if found.password != password {
            return Err(Refusal::unauthorized());
        }
        (found, None, "password", None)
    } else if methods.contains(&"application_credential") {
        let ac = identity
            .get("application_credential")
            .ok_or_else(|| Refusal::bad("Expecting to find application_credential in identity."))?;
        let secret = str_at(ac, "secret")
            .ok_or_else(|| Refusal::bad("Expecting to find secret in application_credential."))?;
        let cred = if let Some(id) = str_at(ac, "id") {
            st.app_creds.get(id).ok_or_else(Refusal::unauthorized)?
        } else {
            let name = str_at(ac, "name").ok_or_else(|| {
                Refusal::bad("Expecting to find id or name in application_credential.")
            })?;
            let user = ac
                .get("user")
                .ok_or_else(|| Refusal::bad("Expecting to find user in application_credential."))?;
            let owner = find_user(st, user)?;
            st.app_creds
                .values()
                .find(|c| c.user_id == owner.id && c.name == name)
                .ok_or_else(Refusal::unauthorized)?
        };
        if cred.secret != secret {
            return Err(Refusal::unauthorized());
        }
        // Keystone refuses an expired application credential with the same 401 as a wrong
        // secret (the detail is only in its log).
        if cred.expires_at.is_some_and(|at| at <= Timestamp::now()) {
            return Err(Refusal::unauthorized());
        }
        let user = st
            .users
            .get(&cred.user_id)
            .ok_or_else(Refusal::unauthorized)?;
        (
            user,
            Some(cred.project_id.clone()),
            "application_credential",
            Some(cred.id.clone()),
        )
    } else {
        return Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "Attempted to authenticate with an unsupported method.".into(),
        ));
    };

    // The scope: the project asked for, or the user's default (an application credential's
    // own project). Users only have roles on their own project.
    let project_id = match auth.get("scope") {
        None => bound_project
            .clone()
            .unwrap_or_else(|| user.project_id.clone()),
        Some(scope) => {
            let Some(project) = scope.get("project") else {
                // Domain, system or trust scopes: the simulated users have no such roles.
                return Err(Refusal::unauthorized());
            };
            let found = if let Some(id) = str_at(project, "id") {
                st.projects.get(id)
            } else {
                let name = str_at(project, "name")
                    .ok_or_else(|| Refusal::bad("Expecting to find id or name in project."))?;
                let domain = project
                    .get("domain")
                    .ok_or_else(|| Refusal::bad("Expecting to find domain in project."))?;
                st.projects.values().find(|p| {
                    p.name == name
                        && p.domain
                            .matches(str_at(domain, "id"), str_at(domain, "name"))
                })
            };
            found.ok_or_else(Refusal::unauthorized)?.id.clone()
        }
    };
    let allowed = bound_project.as_deref().unwrap_or(&user.project_id);
    if project_id != allowed || !st.projects.contains_key(&project_id) {
        return Err(Refusal::unauthorized());
    }
    Ok(Authenticated {
        user_id: user.id.clone(),
        project_id,
        methods: vec![method],
        app_cred_id,
    })
}

/// The catalog: identity in every region (one Keystone), compute in every region (each its
/// own Nova: the first at `/compute/v2.1`, the others under `/regions/<region>`), Magnum
/// in the first region only.
fn catalog(sim: &Sim) -> Value {
    let base = sim.base_url();
    let ids = sim.ids();
    let regions = sim.config().regions();
    let compute_url = |i: usize, region: &str| {
        if i == 0 {
            format!("{base}/compute/v2.1")
        } else {
            format!("{base}/regions/{region}/compute/v2.1")
        }
    };
    let entries: Vec<Value> = ["identity", "compute", "container-infra"]
        .iter()
        .enumerate()
        .map(|(service, kind)| {
            let mut endpoints = Vec::new();
            for (r, region) in regions.iter().enumerate() {
                let url = match *kind {
                    "identity" => format!("{base}/identity"),
                    "compute" => compute_url(r, region),
                    _ if r == 0 => format!("{base}/container-infra/v1"),
                    _ => continue,
                };
                for (j, interface) in ["public", "internal", "admin"].iter().enumerate() {
                    endpoints.push(json!({
                        "id": ids.endpoints[service][r][j],
                        "interface": interface,
                        "region": region,
                        "region_id": region,
                        "url": url,
                    }));
                }
            }
            let name = ["keystone", "nova", "magnum"][service];
            json!({"endpoints": endpoints, "id": ids.services[service], "type": kind, "name": name})
        })
        .collect();
    Value::Array(entries)
}

fn token_body(sim: &Sim, st: &Cloud, t: &Token, with_catalog: bool) -> Option<Value> {
    let user = st.users.get(&t.user_id)?;
    let project = st.projects.get(&t.project_id)?;
    let ids = sim.ids();
    let mut token = json!({
        "methods": t.methods,
        "user": {
            "domain": {"id": user.domain.id, "name": user.domain.name},
            "id": user.id,
            "name": user.name,
            "password_expires_at": null,
        },
        "audit_ids": [t.audit_id],
        "expires_at": time::keystone(t.expires_at),
        "issued_at": time::keystone(t.issued_at),
        "project": {
            "domain": {"id": project.domain.id, "name": project.domain.name},
            "id": project.id,
            "name": project.name,
        },
        "is_domain": false,
        "roles": [{"id": ids.roles[0], "name": "member"}, {"id": ids.roles[1], "name": "reader"}],
    });
    if with_catalog {
        token["catalog"] = catalog(sim);
    }
    if let Some(cred) = t.app_cred_id.as_ref().and_then(|id| st.app_creds.get(id)) {
        token["application_credential"] =
            json!({"id": cred.id, "name": cred.name, "restricted": true});
        token["application_credential_restricted"] = json!(true);
    }
    Some(json!({"token": token}))
}

/// Fernet tokens look like this; clients treat them as opaque.
fn new_token_id() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("gAAAAAB{a}{b}")
}

fn audit_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..22].to_string()
}

fn with_subject(mut response: Response, token_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(token_id) {
        response.headers_mut().insert("X-Subject-Token", v);
    }
    response
        .headers_mut()
        .insert("Vary", HeaderValue::from_static("X-Auth-Token"));
    response
}

async fn issue_token(
    State(sim): State<Sim>,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "Malformed request body: not JSON.");
    };
    let with_catalog = !query.contains_key("nocatalog");
    let ttl = sim.config().token_ttl;
    let issued = sim.with_quiet(|st| {
        let who = authenticate(st, &body)?;
        let now = Timestamp::now();
        let expires = now
            + jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::from_hours(1));
        let token = Token {
            user_id: who.user_id,
            project_id: who.project_id,
            methods: who.methods,
            app_cred_id: who.app_cred_id,
            issued_at: now,
            expires_at: expires,
            audit_id: audit_id(),
        };
        let body = token_body(&sim, st, &token, with_catalog).ok_or_else(Refusal::unauthorized)?;
        let id = new_token_id();
        st.tokens.insert(id.clone(), token);
        Ok::<_, Refusal>((id, body))
    });
    match issued {
        Ok((id, body)) => {
            with_subject((StatusCode::CREATED, axum::Json(body)).into_response(), &id)
        }
        Err(Refusal(status, message)) => error(status, &message),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn validate_token(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let now = Timestamp::now();
    let Some(auth) = header(&headers, "X-Auth-Token") else {
        return unauthorized();
    };
    let subject = header(&headers, "X-Subject-Token")
        .unwrap_or(auth)
        .to_string();
    sim.read(|st| {
        if st.caller(auth, now).is_none() {
            return unauthorized();
        }
        let found = st.tokens.get(&subject).filter(|t| t.expires_at > now);
        match found.and_then(|t| token_body(&sim, st, t, true)) {
            Some(body) => with_subject(axum::Json(body).into_response(), &subject),
            None => error(
                StatusCode::NOT_FOUND,
                &format!("Could not find token: {subject}."),
            ),
        }
    })
}

async fn revoke_token(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let now = Timestamp::now();
    let Some(auth) = header(&headers, "X-Auth-Token") else {
        return unauthorized();
    };
    let Some(subject) = header(&headers, "X-Subject-Token") else {
        return error(StatusCode::BAD_REQUEST, "X-Subject-Token is required.");
    };
    sim.with_quiet(|st| {
        if st.caller(auth, now).is_none() {
            return unauthorized();
        }
        match st.tokens.remove(subject) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                &format!("Could not find token: {subject}."),
            ),
        }
    })
}

/// What keystonemiddleware does in front of Nova and Magnum: a missing, unknown or expired
/// `X-Auth-Token` is a 401 that tells the client where to authenticate.
pub(crate) async fn require_token(
    State(sim): State<Sim>,
    mut req: Request,
    next: Next,
) -> Response {
    let now = Timestamp::now();
    let caller =
        header(req.headers(), "X-Auth-Token").and_then(|t| sim.read(|st| st.caller(t, now)));
    let Some(caller) = caller else {
        let mut response = unauthorized();
        let challenge = format!("Keystone uri=\"{}\"", sim.auth_url());
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert("WWW-Authenticate", v);
        }
        return response;
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

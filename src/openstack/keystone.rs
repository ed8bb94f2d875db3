//! Keystone v3: the token request for our credentials, the token response, and picking a
//! service's endpoint from the catalog. The HTTP side (timeouts, retries, the one-auth-at-a-time
//! lock) is in the client; this module is plain data in, plain data out.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::clouds::{AppCredRef, Credentials, IdOrName, Interface, ProjectRef, Secret, UserRef};
use super::error::{CloudError, Result};

/// The Keystone v3 root for an `auth_url` as people write it: `https://k:5000`,
/// `https://k:5000/v3`, `https://k/identity/v3/`. Version discovery is not done: only v3
/// exists in any supported release.
pub(crate) fn identity_v3_url(auth_url: &str) -> Result<String> {
    let url = auth_url.trim().trim_end_matches('/');
    if url.ends_with("/v3") {
        return Ok(url.to_string());
    }
    if url.ends_with("/v2.0") || url.ends_with("/v2") {
        return Err(CloudError::Config(format!(
            "auth_url {url} points at Keystone v2, which is not supported; use the v3 endpoint"
        )));
    }
    Ok(format!("{url}/v3"))
}

fn id_or_name(v: &IdOrName) -> Value {
    match v {
        IdOrName::Id(id) => json!({"id": id}),
        IdOrName::Name(name) => json!({"name": name}),
    }
}

fn user_json(user: &UserRef) -> Value {
    match user {
        UserRef::Id(id) => json!({"id": id}),
        UserRef::Name { name, domain } => json!({"name": name, "domain": id_or_name(domain)}),
    }
}

/// The body of `POST /v3/auth/tokens`. Password tokens are scoped to the configured project;
/// application credentials carry their own scope (Keystone refuses a scope with them).
pub(crate) fn token_request(credentials: &Credentials) -> Value {
    match credentials {
        Credentials::Password {
            user,
            password,
            project,
        } => {
            let mut user = user_json(user);
            user["password"] = json!(password.expose());
            let project = match project {
                ProjectRef::Id(id) => json!({"id": id}),
                ProjectRef::Name { name, domain } => {
                    json!({"name": name, "domain": id_or_name(domain)})
                }
            };
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": user}},
                "scope": {"project": project},
            }})
        }
        Credentials::ApplicationCredential { credential, secret } => {
            let mut cred = match credential {
                AppCredRef::Id(id) => json!({"id": id}),
                AppCredRef::Name { name, user } => json!({"name": name, "user": user_json(user)}),
            };
            cred["secret"] = json!(secret.expose());
            json!({"auth": {"identity": {
                "methods": ["application_credential"],
                "application_credential": cred,
            }}})
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct TokenResponse {
    pub token: TokenBody,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct TokenBody {
    pub expires_at: String,
    #[serde(default)]
    pub issued_at: Option<String>,
    #[serde(default)]
    pub catalog: Option<Vec<CatalogEntry>>,
}

/// One service of the catalog.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub(crate) struct CatalogEntry {
    #[serde(rename = "type")]
    pub service_type: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<CatalogEndpoint>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub(crate) struct CatalogEndpoint {
    pub interface: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub region_id: Option<String>,
    pub url: String,
}

impl CatalogEndpoint {
    fn region(&self) -> Option<&str> {
        self.region_id.as_deref().or(self.region.as_deref())
    }
    fn in_region(&self, region: &str) -> bool {
        self.region_id.as_deref() == Some(region) || self.region.as_deref() == Some(region)
    }
}

/// The URL of `service_type`'s endpoint for `interface` in `region` (or in the only region the
/// catalog has for it), without a trailing slash.
pub(crate) fn select_endpoint(
    catalog: &[CatalogEntry],
    service_type: &str,
    interface: Interface,
    region: Option<&str>,
) -> Result<String> {
    let services: Vec<&CatalogEntry> = catalog
        .iter()
        .filter(|e| e.service_type == service_type)
        .collect();
    if services.is_empty() {
        let mut present: Vec<&str> = catalog.iter().map(|e| e.service_type.as_str()).collect();
        present.sort();
        present.dedup();
        return Err(CloudError::EndpointMissing(format!(
            "the Keystone catalog has no {service_type} service (it has: {})",
            present.join(", ")
        )));
    }
    let candidates: Vec<&CatalogEndpoint> = services
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.interface.eq_ignore_ascii_case(interface.as_str()))
        .filter(|e| region.is_none_or(|r| e.in_region(r)))
        .collect();
    let offered = || {
        let mut all: Vec<String> = services
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .map(|e| format!("{} in {}", e.interface, e.region().unwrap_or("no region")))
            .collect();
        all.sort();
        all.dedup();
        all.join(", ")
    };
    let Some(first) = candidates.first() else {
        return Err(CloudError::EndpointMissing(format!(
            "the Keystone catalog has no {} {service_type} endpoint{} (it has: {})",
            interface.as_str(),
            region
                .map(|r| format!(" in region {r}"))
                .unwrap_or_default(),
            offered()
        )));
    };
    if region.is_none() {
        let mut regions: Vec<&str> = candidates.iter().filter_map(|e| e.region()).collect();
        regions.sort();
        regions.dedup();
        if regions.len() > 1 {
            return Err(CloudError::Config(format!(
                "the Keystone catalog has {service_type} endpoints in several regions ({}): set \
                 region_name in clouds.yaml",
                regions.join(", ")
            )));
        }
    }
    Ok(first.url.trim_end_matches('/').to_string())
}

/// A token with its catalog, reused until shortly before it expires.
#[derive(Debug)]
pub(crate) struct Session {
    pub token: Secret,
    pub catalog: Vec<CatalogEntry>,
    /// When to stop using the token, on our own monotonic clock: the token's lifetime as
    /// Keystone states it (expires_at − issued_at, so clock skew does not matter) less a
    /// margin, counted from when the answer arrived.
    pub refresh_at: Instant,
}

impl Session {
    pub fn fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }
}

/// Builds the session from a token response that arrived at `received`. The refresh margin is
/// at most half the token's lifetime, so short-lived tokens are still reused.
pub(crate) fn session(
    token: Secret,
    body: TokenBody,
    received: Instant,
    margin: Duration,
) -> std::result::Result<Session, String> {
    let expires: Timestamp = body.expires_at.parse().map_err(|e| {
        format!(
            "token expires_at {:?} is not a timestamp: {e}",
            body.expires_at
        )
    })?;
    let issued: Timestamp = match &body.issued_at {
        Some(t) => t
            .parse()
            .map_err(|e| format!("token issued_at {t:?} is not a timestamp: {e}"))?,
        None => Timestamp::now(),
    };
    let lifetime = expires
        .duration_since(issued)
        .try_into()
        .unwrap_or(Duration::ZERO);
    let margin = margin.min(lifetime / 2);
    let catalog = body.catalog.ok_or_else(|| {
        "the token has no catalog (is it scoped to a project the user has a role on?)".to_string()
    })?;
    Ok(Session {
        token,
        catalog,
        refresh_at: received + lifetime.saturating_sub(margin),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(interface: &str, region: &str, url: &str) -> CatalogEndpoint {
        CatalogEndpoint {
            interface: interface.into(),
            region: Some(region.into()),
            region_id: Some(region.into()),
            url: url.into(),
        }
    }

    fn catalog() -> Vec<CatalogEntry> {
        vec![
            CatalogEntry {
                service_type: "identity".into(),
                name: Some("keystone".into()),
                endpoints: vec![endpoint("public", "RegionOne", "https://k/identity")],
            },
            CatalogEntry {
                service_type: "compute".into(),
                name: Some("nova".into()),
                endpoints: vec![
                    endpoint("public", "RegionOne", "https://nova.one/v2.1/"),
                    endpoint("internal", "RegionOne", "http://nova.one.internal/v2.1"),
                    endpoint("public", "RegionTwo", "https://nova.two/v2.1"),
                ],
            },
            CatalogEntry {
                service_type: "container-infra".into(),
                name: Some("magnum".into()),
                endpoints: vec![endpoint("public", "RegionOne", "https://magnum.one/v1")],
            },
        ]
    }

    #[test]
    fn endpoints_by_type_interface_and_region() {
        let c = catalog();
        let pick = |t, i, r| select_endpoint(&c, t, i, r);
        assert_eq!(
            pick("compute", Interface::Public, Some("RegionOne")).unwrap(),
            "https://nova.one/v2.1"
        );
        assert_eq!(
            pick("compute", Interface::Internal, Some("RegionOne")).unwrap(),
            "http://nova.one.internal/v2.1"
        );
        assert_eq!(
            pick("compute", Interface::Public, Some("RegionTwo")).unwrap(),
            "https://nova.two/v2.1"
        );
        // Only one region offers Magnum: no region_name needed.
        assert_eq!(
            pick("container-infra", Interface::Public, None).unwrap(),
            "https://magnum.one/v1"
        );
    }

    #[test]
    fn catalog_misses_are_explained() {
        let c = catalog();
        let e = select_endpoint(&c, "compute", Interface::Public, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("several regions (RegionOne, RegionTwo): set region_name"),
            "{e}"
        );
        let e = select_endpoint(&c, "compute", Interface::Admin, Some("RegionOne"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no admin compute endpoint in region RegionOne (it has: internal in RegionOne, public in RegionOne, public in RegionTwo)"),
            "{e}"
        );
        let e = select_endpoint(&c, "container-infra", Interface::Public, Some("RegionTwo"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no public container-infra endpoint in region RegionTwo"),
            "{e}"
        );
        let e = select_endpoint(&c, "volumev3", Interface::Public, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no volumev3 service (it has: compute, container-infra, identity)"),
            "{e}"
        );
    }

    #[test]
    fn auth_url_spellings() {
        for (given, want) in [
            ("https://k:5000", "https://k:5000/v3"),
            ("https://k:5000/", "https://k:5000/v3"),
            ("https://k:5000/v3", "https://k:5000/v3"),
            ("https://k/identity/v3/", "https://k/identity/v3"),
            ("https://k/identity", "https://k/identity/v3"),
        ] {
            assert_eq!(identity_v3_url(given).unwrap(), want);
        }
        assert!(identity_v3_url("https://k:5000/v2.0").is_err());
    }

    #[test]
    fn token_requests() {
        let password = Credentials::Password {
            user: UserRef::Name {
                name: "u".into(),
                domain: IdOrName::Name("Default".into()),
            },
            password: Secret::new("pw"),
            project: ProjectRef::Name {
                name: "p".into(),
                domain: IdOrName::Id("default".into()),
            },
        };
        assert_eq!(
            token_request(&password),
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "u", "domain": {"name": "Default"}, "password": "pw"}}},
                "scope": {"project": {"name": "p", "domain": {"id": "default"}}}
            }})
        );
        let app = Credentials::ApplicationCredential {
            credential: AppCredRef::Id("ac".into()),
            secret: Secret::new("s"),
        };
        assert_eq!(
            token_request(&app),
            json!({"auth": {"identity": {"methods": ["application_credential"],
                "application_credential": {"id": "ac", "secret": "s"}}}})
        );
    }

    #[test]
    fn tokens_are_refreshed_before_they_expire() {
        let now = Instant::now();
        let body = |issued: &str, expires: &str| TokenBody {
            expires_at: expires.into(),
            issued_at: Some(issued.into()),
            catalog: Some(catalog()),
        };
        // An hour-long token: refreshed a minute early, whatever our clock says the time is.
        let s = session(
            Secret::new("t"),
            body("2015-11-07T01:58:43.578887Z", "2015-11-07T02:58:43.578887Z"),
            now,
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(s.refresh_at - now, Duration::from_secs(59 * 60));
        assert!(s.fresh(now + Duration::from_secs(58 * 60)));
        assert!(!s.fresh(now + Duration::from_secs(59 * 60)));
        // A 4-second token: the margin shrinks to half its life.
        let s = session(
            Secret::new("t"),
            body("2015-11-07T01:58:40Z", "2015-11-07T01:58:44Z"),
            now,
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(s.refresh_at - now, Duration::from_secs(2));
        let no_catalog = TokenBody {
            catalog: None,
            ..body("2015-11-07T01:58:40Z", "2015-11-07T01:58:44Z")
        };
        assert!(
            session(Secret::new("t"), no_catalog, now, Duration::ZERO)
                .unwrap_err()
                .contains("no catalog")
        );
    }
}

//! A standard `clouds.yaml` (as openstacksdk reads it), reduced to what one cloud needs:
//! where Keystone is, who we are, which region and interface to use, and how to trust TLS.
//!
//! The file is read as untyped YAML and each field is taken by hand, so no error message
//! ever quotes a value from the file (serde's type errors would quote a misplaced password).
//! Secrets are kept in [`Secret`], whose `Debug` prints `***`.

use std::fmt;

use serde_yaml::{Mapping, Value};

use super::error::{CloudError, Result};

/// A password, an application credential secret or a token. `Debug` never shows it and it
/// has no `Display`; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Which of a service's catalog endpoints to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Interface {
    #[default]
    Public,
    Internal,
    Admin,
}

impl Interface {
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Public => "public",
            Interface::Internal => "internal",
            Interface::Admin => "admin",
        }
    }

    /// `public`, `internal`, `admin`, and the old `publicURL` spellings.
    fn parse(value: &str) -> Option<Interface> {
        let v = value.trim().to_ascii_lowercase();
        match v.strip_suffix("url").unwrap_or(&v) {
            "public" => Some(Interface::Public),
            "internal" => Some(Interface::Internal),
            "admin" => Some(Interface::Admin),
            _ => None,
        }
    }
}

/// A Keystone object named by id, or by name (within a domain, for users and projects).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdOrName {
    Id(String),
    Name(String),
}

/// A user: by id, or by name within a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserRef {
    Id(String),
    Name { name: String, domain: IdOrName },
}

/// The project a password token is scoped to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectRef {
    Id(String),
    Name { name: String, domain: IdOrName },
}

/// An application credential: by id, or by name and its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppCredRef {
    Id(String),
    Name { name: String, user: UserRef },
}

/// How we prove who we are. `Debug` shows who, never the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// `auth_type: password` / `v3password`, scoped to a project.
    Password {
        user: UserRef,
        password: Secret,
        project: ProjectRef,
    },
    /// `auth_type: v3applicationcredential`: the credential carries its own project scope.
    ApplicationCredential {
        credential: AppCredRef,
        secret: Secret,
    },
}

impl Credentials {
    /// The secret part, for scrubbing messages that come back from the services.
    pub(crate) fn secret(&self) -> &Secret {
        match self {
            Credentials::Password { password, .. } => password,
            Credentials::ApplicationCredential { secret, .. } => secret,
        }
    }

    /// The auth method, as logs and messages name it.
    pub fn method(&self) -> &'static str {
        match self {
            Credentials::Password { .. } => "password",
            Credentials::ApplicationCredential { .. } => "application_credential",
        }
    }
}

/// One cloud of a clouds.yaml, ready for the client.
#[derive(Clone, PartialEq, Eq)]
pub struct CloudConfig {
    /// The cloud's name in clouds.yaml.
    pub name: String,
    /// `auth.auth_url` as written (the client finds the v3 root from it).
    pub auth_url: String,
    pub credentials: Credentials,
    /// `region_name`; None picks the only region the catalog has.
    pub region_name: Option<String>,
    /// `interface` (or the older `endpoint_type`), default `public`.
    pub interface: Interface,
    /// PEM bundle of the CAs to trust instead of the system's: the caller's (from a Secret
    /// key) if given, else the file `cacert` names.
    pub ca_pem: Option<Vec<u8>>,
    /// `verify: false` turns TLS certificate checks off.
    pub verify: bool,
}

impl fmt::Debug for CloudConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudConfig")
            .field("name", &self.name)
            .field("auth_url", &self.auth_url)
            .field("credentials", &self.credentials)
            .field("region_name", &self.region_name)
            .field("interface", &self.interface)
            .field(
                "ca_pem",
                &self.ca_pem.as_ref().map(|p| format!("<{} bytes>", p.len())),
            )
            .field("verify", &self.verify)
            .finish()
    }
}

/// The names of the clouds a clouds.yaml defines, sorted.
pub fn cloud_names(yaml: &str) -> Result<Vec<String>> {
    let clouds = clouds_mapping(&parse(yaml)?)?.clone();
    Ok(sorted_keys(&clouds))
}

impl CloudConfig {
    /// Reads cloud `cloud` from the text of a clouds.yaml. `ca_pem`, when given, is the CA
    /// bundle to trust (in a cluster it comes from a Secret key) and wins over `cacert`,
    /// which is otherwise read as a path.
    pub fn from_clouds_yaml(yaml: &str, cloud: &str, ca_pem: Option<Vec<u8>>) -> Result<Self> {
        let doc = parse(yaml)?;
        let clouds = clouds_mapping(&doc)?;
        let Some(entry) = clouds.get(cloud) else {
            let names = sorted_keys(clouds);
            return Err(config(format!(
                "cloud {cloud:?} is not in clouds.yaml; it defines: {}",
                if names.is_empty() {
                    "no clouds".to_string()
                } else {
                    names.join(", ")
                }
            )));
        };
        let at = format!("clouds.{cloud}");
        let entry = entry
            .as_mapping()
            .ok_or_else(|| config(format!("{at} must be a mapping")))?;
        let fields = Fields {
            map: entry,
            at: at.clone(),
        };

        if let Some(version) = fields.text("identity_api_version")?
            && version.trim() != "3"
            && !version.trim().starts_with("3.")
        {
            return Err(config(format!(
                "{at}.identity_api_version is {version}; only Keystone v3 is supported"
            )));
        }

        let auth_map = match entry.get("auth") {
            Some(Value::Mapping(m)) => m,
            Some(_) => return Err(config(format!("{at}.auth must be a mapping"))),
            None => return Err(config(format!("{at}.auth is missing"))),
        };
        let auth = Fields {
            map: auth_map,
            at: format!("{at}.auth"),
        };
        let auth_url = auth
            .text("auth_url")?
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| config(format!("{at}.auth.auth_url is missing")))?;
        if !(auth_url.starts_with("http://") || auth_url.starts_with("https://")) {
            return Err(config(format!(
                "{at}.auth.auth_url must be an http:// or https:// URL"
            )));
        }

        let auth_type = fields.text("auth_type")?;
        let credentials = credentials(&auth, auth_type.as_deref(), &at)?;

        let interface = match fields.text("interface")?.or(fields.text("endpoint_type")?) {
            None => Interface::Public,
            Some(i) => Interface::parse(&i).ok_or_else(|| {
                config(format!(
                    "{at}.interface must be public, internal or admin, not {i:?}"
                ))
            })?,
        };

        let verify = match (fields.flag("verify")?, fields.flag("insecure")?) {
            (Some(v), _) => v,
            (None, Some(insecure)) => !insecure,
            (None, None) => true,
        };

        let ca_pem = match (ca_pem, fields.text("cacert")?) {
            (Some(pem), _) => Some(pem),
            (None, Some(path)) => Some(std::fs::read(&path).map_err(|e| {
                config(format!(
                    "{at}.cacert: cannot read {path}: {e} (in a cluster, give the CA bundle \
                     in the Secret instead of a path)"
                ))
            })?),
            (None, None) => None,
        };

        Ok(CloudConfig {
            name: cloud.to_string(),
            auth_url,
            credentials,
            region_name: fields.text("region_name")?.filter(|r| !r.is_empty()),
            interface,
            ca_pem,
            verify,
        })
    }
}

fn config(message: String) -> CloudError {
    CloudError::Config(message)
}

fn parse(yaml: &str) -> Result<Value> {
    serde_yaml::from_str::<Value>(yaml).map_err(|e| {
        // The syntax errors of the YAML parser carry the line and column and name what was
        // expected, never the value of a scalar.
        let at = e
            .location()
            .map(|l| format!(" at line {} column {}", l.line(), l.column()))
            .unwrap_or_default();
        config(format!("clouds.yaml is not valid YAML{at}: {e}"))
    })
}

fn clouds_mapping(doc: &Value) -> Result<&Mapping> {
    match doc.get("clouds") {
        Some(Value::Mapping(m)) => Ok(m),
        Some(_) => Err(config("clouds.yaml: `clouds` must be a mapping".into())),
        None => Err(config(
            "clouds.yaml has no `clouds` mapping at the top level".into(),
        )),
    }
}

fn sorted_keys(map: &Mapping) -> Vec<String> {
    let mut names: Vec<String> = map.keys().filter_map(scalar).collect();
    names.sort();
    names
}

/// A scalar as text: strings as they are, numbers and booleans written out.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Field access on one mapping, with errors that name the field's path and never its value.
struct Fields<'a> {
    map: &'a Mapping,
    at: String,
}

impl Fields<'_> {
    /// A non-secret text field; numbers are accepted (`project_id: 1234`), null is absent.
    fn text(&self, key: &str) -> Result<Option<String>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => scalar(v)
                .map(Some)
                .ok_or_else(|| config(format!("{}.{key} must be a string", self.at))),
        }
    }

    /// A secret: only a YAML string is taken, since a number would have lost its exact
    /// spelling (leading zeros, exponents) on the way.
    fn secret(&self, key: &str) -> Result<Option<Secret>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(Secret::new(s.clone()))),
            Some(_) => Err(config(format!("{}.{key} must be a quoted string", self.at))),
        }
    }

    fn flag(&self, key: &str) -> Result<Option<bool>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(config(format!("{}.{key} must be true or false", self.at))),
        }
    }

    fn first_text(&self, keys: &[&str]) -> Result<Option<String>> {
        for key in keys {
            if let Some(v) = self.text(key)?.filter(|v| !v.is_empty()) {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }
}

/// The domain of a user or project named by name: its own `*_domain_id|name`, else the
/// shared `domain_id|domain_name` (openstacksdk fills both from it for project scope).
fn domain(auth: &Fields<'_>, prefix: &str) -> Result<Option<IdOrName>> {
    if let Some(id) = auth.first_text(&[&format!("{prefix}_domain_id")])? {
        return Ok(Some(IdOrName::Id(id)));
    }
    if let Some(name) = auth.first_text(&[&format!("{prefix}_domain_name")])? {
        return Ok(Some(IdOrName::Name(name)));
    }
    if let Some(id) = auth.first_text(&["domain_id"])? {
        return Ok(Some(IdOrName::Id(id)));
    }
    Ok(auth.first_text(&["domain_name"])?.map(IdOrName::Name))
}

fn user(auth: &Fields<'_>) -> Result<Option<UserRef>> {
    if let Some(id) = auth.first_text(&["user_id"])? {
        return Ok(Some(UserRef::Id(id)));
    }
    let Some(name) = auth.first_text(&["username", "user_name"])? else {
        return Ok(None);
    };
    let domain = domain(auth, "user")?.ok_or_else(|| {
        config(format!(
            "{}.username needs the user's domain: user_domain_name or user_domain_id (or \
             domain_name/domain_id)",
            auth.at
        ))
    })?;
    Ok(Some(UserRef::Name { name, domain }))
}

fn credentials(auth: &Fields<'_>, auth_type: Option<&str>, at: &str) -> Result<Credentials> {
    let app_cred_given = auth.map.contains_key("application_credential_id")
        || auth.map.contains_key("application_credential_name")
        || auth.map.contains_key("application_credential_secret");
    let kind = match auth_type.map(|t| t.trim().to_ascii_lowercase()) {
        None if app_cred_given => "v3applicationcredential".to_string(),
        None => "password".to_string(),
        Some(t) => t,
    };
    match kind.as_str() {
        "password" | "v3password" => password_credentials(auth, at),
        "v3applicationcredential" | "applicationcredential" => app_credentials(auth, at),
        other => Err(config(format!(
            "{at}.auth_type {other:?} is not supported; use password, v3password or \
             v3applicationcredential"
        ))),
    }
}

fn password_credentials(auth: &Fields<'_>, at: &str) -> Result<Credentials> {
    let user = user(auth)?;
    let password = auth.secret("password")?.filter(|p| !p.expose().is_empty());
    let (Some(user), Some(password)) = (user, password) else {
        return Err(config(format!(
            "{at}.auth has no usable credentials: password authentication needs username (or \
             user_id) and password; an application credential needs application_credential_id \
             (or application_credential_name) and application_credential_secret"
        )));
    };
    let project = if let Some(id) = auth.first_text(&["project_id", "tenant_id"])? {
        ProjectRef::Id(id)
    } else if let Some(name) = auth.first_text(&["project_name", "tenant_name"])? {
        let domain = domain(auth, "project")?.ok_or_else(|| {
            config(format!(
                "{at}.auth.project_name needs the project's domain: project_domain_name or \
                 project_domain_id (or domain_name/domain_id)"
            ))
        })?;
        ProjectRef::Name { name, domain }
    } else {
        return Err(config(format!(
            "{at}.auth names no project: password authentication needs project_id, or \
             project_name with its domain"
        )));
    };
    Ok(Credentials::Password {
        user,
        password,
        project,
    })
}

fn app_credentials(auth: &Fields<'_>, at: &str) -> Result<Credentials> {
    let secret = auth
        .secret("application_credential_secret")?
        .filter(|s| !s.expose().is_empty())
        .ok_or_else(|| {
            config(format!(
                "{at}.auth has no usable credentials: application_credential_secret is missing"
            ))
        })?;
    let credential = if let Some(id) = auth.first_text(&["application_credential_id"])? {
        AppCredRef::Id(id)
    } else if let Some(name) = auth.first_text(&["application_credential_name"])? {
        let user = user(auth)?.ok_or_else(|| {
            config(format!(
                "{at}.auth.application_credential_name needs its owner: username (with its \
                 domain) or user_id"
            ))
        })?;
        AppCredRef::Name { name, user }
    } else {
        return Err(config(format!(
            "{at}.auth has no usable credentials: give application_credential_id, or \
             application_credential_name with username or user_id"
        )));
    };
    Ok(Credentials::ApplicationCredential { credential, secret })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "s3cr3t-Pa55";
    const APP_SECRET: &str = "app-cred-s3cr3t";

    fn yaml() -> String {
        format!(
            r#"
clouds:
  prod:
    auth:
      auth_url: https://keystone.example.com:5000/v3
      username: nodehealer
      password: "{PASSWORD}"
      project_name: k8s
      user_domain_name: Default
      project_domain_id: default
    region_name: RegionTwo
    interface: internal
    identity_api_version: 3
  byid:
    auth:
      auth_url: https://keystone.example.com:5000
      user_id: 9b1f
      password: "{PASSWORD}"
      project_id: 4d2c
    verify: false
  shared-domain:
    auth:
      auth_url: https://keystone.example.com/identity
      username: nodehealer
      password: "{PASSWORD}"
      project_name: k8s
      domain_name: Corp
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example.com:5000/v3
      application_credential_id: 21ac
      application_credential_secret: "{APP_SECRET}"
    region_name: RegionOne
  appcred-by-name:
    auth:
      auth_url: https://keystone.example.com:5000/v3
      application_credential_name: healer
      username: nodehealer
      user_domain_id: default
      application_credential_secret: "{APP_SECRET}"
"#
        )
    }

    fn load(cloud: &str) -> Result<CloudConfig> {
        CloudConfig::from_clouds_yaml(&yaml(), cloud, None)
    }

    fn err(yaml: &str, cloud: &str) -> String {
        CloudConfig::from_clouds_yaml(yaml, cloud, None)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn password_with_names() {
        let c = load("prod").unwrap();
        assert_eq!(c.auth_url, "https://keystone.example.com:5000/v3");
        assert_eq!(c.region_name.as_deref(), Some("RegionTwo"));
        assert_eq!(c.interface, Interface::Internal);
        assert!(c.verify);
        assert_eq!(
            c.credentials,
            Credentials::Password {
                user: UserRef::Name {
                    name: "nodehealer".into(),
                    domain: IdOrName::Name("Default".into())
                },
                password: Secret::new(PASSWORD),
                project: ProjectRef::Name {
                    name: "k8s".into(),
                    domain: IdOrName::Id("default".into())
                },
            }
        );
    }

    #[test]
    fn password_with_ids_and_verify_off() {
        let c = load("byid").unwrap();
        assert!(!c.verify);
        assert_eq!(c.interface, Interface::Public);
        assert_eq!(c.region_name, None);
        let Credentials::Password { user, project, .. } = c.credentials else {
            panic!("password expected");
        };
        assert_eq!(user, UserRef::Id("9b1f".into()));
        assert_eq!(project, ProjectRef::Id("4d2c".into()));
    }

    #[test]
    fn domain_name_serves_user_and_project() {
        let Credentials::Password { user, project, .. } =
            load("shared-domain").unwrap().credentials
        else {
            panic!("password expected");
        };
        let corp = IdOrName::Name("Corp".into());
        assert_eq!(
            user,
            UserRef::Name {
                name: "nodehealer".into(),
                domain: corp.clone()
            }
        );
        assert_eq!(
            project,
            ProjectRef::Name {
                name: "k8s".into(),
                domain: corp
            }
        );
    }

    #[test]
    fn application_credentials_by_id_and_by_name() {
        let c = load("appcred").unwrap();
        assert_eq!(
            c.credentials,
            Credentials::ApplicationCredential {
                credential: AppCredRef::Id("21ac".into()),
                secret: Secret::new(APP_SECRET)
            }
        );
        // No auth_type: the application_credential_* keys say which method.
        let c = load("appcred-by-name").unwrap();
        assert_eq!(
            c.credentials,
            Credentials::ApplicationCredential {
                credential: AppCredRef::Name {
                    name: "healer".into(),
                    user: UserRef::Name {
                        name: "nodehealer".into(),
                        domain: IdOrName::Id("default".into())
                    }
                },
                secret: Secret::new(APP_SECRET)
            }
        );
    }

    #[test]
    fn the_callers_ca_wins_over_the_cacert_path() {
        let yaml = "clouds:\n  c:\n    cacert: /nonexistent/ca.pem\n    auth:\n      auth_url: https://k/v3\n      user_id: u\n      password: p\n      project_id: x\n";
        let c = CloudConfig::from_clouds_yaml(yaml, "c", Some(b"PEM".to_vec())).unwrap();
        assert_eq!(c.ca_pem.as_deref(), Some(&b"PEM"[..]));
        let e = err(yaml, "c");
        assert!(
            e.contains("clouds.c.cacert: cannot read /nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn unknown_cloud_lists_the_ones_present() {
        let e = load("staging").unwrap_err().to_string();
        assert_eq!(
            e,
            "OpenStack configuration: cloud \"staging\" is not in clouds.yaml; it defines: \
             appcred, appcred-by-name, byid, prod, shared-domain"
        );
        assert_eq!(
            cloud_names(&yaml()).unwrap(),
            [
                "appcred",
                "appcred-by-name",
                "byid",
                "prod",
                "shared-domain"
            ]
        );
    }

    #[test]
    fn clear_errors_for_broken_files() {
        let cases: &[(&str, &str)] = &[
            (
                "clouds:\n  c:\n    auth:\n      username: u\n",
                "clouds.c.auth.auth_url is missing",
            ),
            (
                "clouds:\n  c:\n    region_name: r\n",
                "clouds.c.auth is missing",
            ),
            (
                "clouds:\n  c:\n    auth:\n      auth_url: https://k/v3\n      username: u\n      user_domain_name: D\n      project_id: p\n",
                "clouds.c.auth has no usable credentials",
            ),
            (
                "clouds:\n  c:\n    auth:\n      auth_url: https://k/v3\n      username: u\n      password: p\n      project_id: p\n",
                "clouds.c.auth.username needs the user's domain",
            ),
            (
                "clouds:\n  c:\n    auth:\n      auth_url: https://k/v3\n      user_id: u\n      password: p\n",
                "clouds.c.auth names no project",
            ),
            (
                "clouds:\n  c:\n    auth_type: v3oidcpassword\n    auth:\n      auth_url: https://k/v3\n",
                "auth_type \"v3oidcpassword\" is not supported",
            ),
            (
                "clouds:\n  c:\n    identity_api_version: 2\n    auth:\n      auth_url: https://k/v2.0\n",
                "only Keystone v3 is supported",
            ),
            (
                "clouds:\n  c:\n    interface: outside\n    auth:\n      auth_url: https://k/v3\n      user_id: u\n      password: p\n      project_id: x\n",
                "clouds.c.interface must be public, internal or admin",
            ),
            (
                "clouds:\n  c:\n    auth:\n      auth_url: keystone:5000\n",
                "auth_url must be an http:// or https:// URL",
            ),
            ("other: 1\n", "clouds.yaml has no `clouds` mapping"),
            (
                "clouds:\n  c:\n    auth:\n      auth_url: https://k/v3\n      application_credential_id: a\n",
                "application_credential_secret is missing",
            ),
        ];
        for (yaml, want) in cases {
            let e = err(yaml, "c");
            assert!(e.contains(want), "{yaml:?}: got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn malformed_yaml_names_the_line() {
        let yaml = "clouds:\n  c:\n    auth:\n      auth_url: https://k/v3\n     password: [oops\n";
        let e = err(yaml, "c");
        assert!(
            e.starts_with("OpenStack configuration: clouds.yaml is not valid YAML at line"),
            "{e}"
        );
        assert!(e.contains("line 5") || e.contains("line 4"), "{e}");
    }

    #[test]
    fn secrets_never_show_in_debug_or_errors() {
        for cloud in ["prod", "byid", "appcred", "appcred-by-name"] {
            let debug = format!("{:?}", load(cloud).unwrap());
            assert!(!debug.contains(PASSWORD), "{debug}");
            assert!(!debug.contains(APP_SECRET), "{debug}");
            assert!(debug.contains("***"), "{debug}");
        }
        // A password where a mapping belongs, a password that is not a string, a secret next
        // to a broken field: the messages name fields, never values.
        let broken = [
            format!("clouds:\n  c:\n    auth: \"{PASSWORD}\"\n"),
            "clouds:\n  c:\n    auth:\n      auth_url: https://k/v3\n      user_id: u\n      password: 123456789\n      project_id: x\n".to_string(),
            format!("clouds:\n  c:\n    verify: \"{PASSWORD}\"\n    auth:\n      auth_url: https://k/v3\n      user_id: u\n      password: \"{PASSWORD}\"\n      project_id: x\n"),
            format!("clouds:\n  c:\n    auth:\n      auth_url: https://k/v3\n      password: \"{PASSWORD}\"\n      project_id: [\"{PASSWORD}\"]\n"),
        ];
        for yaml in &broken {
            let e = err(yaml, "c");
            assert!(!e.contains(PASSWORD), "{e}");
            assert!(!e.contains("123456789"), "{e}");
        }
        assert!(err(&broken[1], "c").contains("clouds.c.auth.password must be a quoted string"));
    }
}

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn a_password_token_carries_the_catalog_for_the_region() {
    let env = env_with(openstack_sim::SimConfig {
        region: "RegionTwo".into(),
        ..config()
    })
    .await;
    let r = env.authenticate(&password_auth()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(r.header("X-Subject-Token").is_some_and(|t| t.len() > 32));
    let token = &r.body["token"];
    assert_eq!(token["methods"], json!(["password"]));
    assert_eq!(token["project"]["id"], json!(env.project_id));
    assert_eq!(
        token["project"]["domain"],
        json!({"id": "default", "name": "Default"})
    );
    assert_eq!(token["user"]["id"], json!(env.user_id));
    let issued = token["issued_at"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap();
    let expires = token["expires_at"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap();
    assert_eq!(expires.duration_since(issued).as_secs(), 3600);

    let catalog = token["catalog"].as_array().unwrap();
    let mut types: Vec<&str> = catalog
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(types, ["compute", "container-infra", "identity"]);
    let compute = catalog.iter().find(|s| s["type"] == "compute").unwrap();
    assert_eq!(compute["name"], "nova");
    let interfaces: Vec<&str> = compute["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["interface"].as_str().unwrap())
        .collect();
    assert_eq!(interfaces, ["public", "internal", "admin"]);
    for e in compute["endpoints"].as_array().unwrap() {
        assert_eq!(e["region"], "RegionTwo");
        assert_eq!(e["region_id"], "RegionTwo");
        assert_eq!(e["url"], json!(env.url("/compute/v2.1")));
    }
}

#[tokio::test]
async fn users_and_projects_may_be_named_or_given_by_id_and_the_default_project_is_the_scope() {
    let env = env().await;
    let by_id = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"id": env.user_id, "password": PASSWORD}}},
        "scope": {"project": {"id": env.project_id}}
    }});
    assert_eq!(env.authenticate(&by_id).await.status, StatusCode::CREATED);
    let domain_by_id = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": USER, "domain": {"id": "default"}, "password": PASSWORD}}}}});
    let r = env.authenticate(&domain_by_id).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.body["token"]["project"]["name"], PROJECT,
        "no scope: the user's default project"
    );
    let nocatalog = env
        .call(
            Method::POST,
            "/identity/v3/auth/tokens?nocatalog",
            &[],
            Some(&by_id),
        )
        .await;
    assert_eq!(nocatalog.status, StatusCode::CREATED);
    assert!(nocatalog.body["token"].get("catalog").is_none());
}

async fn assert_unauthorized(env: &Env, body: Value) {
    let r = env.authenticate(&body).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{body}: {}", r.body);
    assert_eq!(r.body["error"]["code"], 401);
    assert_eq!(r.body["error"]["title"], "Unauthorized");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(r.header("X-Subject-Token").is_none());
}

#[tokio::test]
async fn bad_credentials_and_foreign_projects_are_401() {
    let env = env().await;
    let other = env.sim.add_project("someone-else", "Default");
    let mut wrong_password = password_auth();
    wrong_password["auth"]["identity"]["password"]["user"]["password"] = json!("hunter2");
    assert_unauthorized(&env, wrong_password).await;
    let mut unknown_user = password_auth();
    unknown_user["auth"]["identity"]["password"]["user"]["name"] = json!("mallory");
    assert_unauthorized(&env, unknown_user).await;
    let mut wrong_domain = password_auth();
    wrong_domain["auth"]["identity"]["password"]["user"]["domain"] = json!({"name": "Elsewhere"});
    assert_unauthorized(&env, wrong_domain).await;
    let mut foreign = password_auth();
    foreign["auth"]["scope"] = json!({"project": {"id": other}});
    assert_unauthorized(&env, foreign).await;
    let mut unsupported = password_auth();
    unsupported["auth"]["identity"]["methods"] = json!(["totp"]);
    assert_unauthorized(&env, unsupported).await;

    let malformed = env.authenticate(&json!({"identity": {}})).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.body["error"]["code"], 400);
}

#[tokio::test]
async fn application_credentials_by_id_or_by_name_and_user() {
    let env = env().await;
    let id = env
        .sim
        .add_application_credential(&env.user_id, "nodehealer-fencing", "s3cret");
    let by_id = json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"id": id, "secret": "s3cret"}}}});
    let r = env.authenticate(&by_id).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.body["token"]["methods"],
        json!(["application_credential"])
    );
    assert_eq!(r.body["token"]["project"]["id"], json!(env.project_id));
    assert_eq!(r.body["token"]["application_credential"]["id"], json!(id));

    let by_name = json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"name": "nodehealer-fencing", "secret": "s3cret",
            "user": {"name": USER, "domain": {"name": "Default"}}}}}});
    assert_eq!(env.authenticate(&by_name).await.status, StatusCode::CREATED);

    let token = env
        .authenticate(&by_id)
        .await
        .header("X-Subject-Token")
        .unwrap()
        .to_string();
    let servers = env
        .call(
            Method::GET,
            "/compute/v2.1/servers",
            &[("X-Auth-Token", &token)],
            None,
        )
        .await;
    assert_eq!(
        servers.status,
        StatusCode::OK,
        "an application credential's token works with Nova"
    );

    let wrong_secret = json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"id": id, "secret": "guess"}}}});
    assert_unauthorized(&env, wrong_secret).await;
    let unknown = json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"id": "0000", "secret": "s3cret"}}}});
    assert_unauthorized(&env, unknown).await;
}

#[tokio::test]
async fn tokens_expire_and_nova_and_magnum_then_answer_401() {
    let env = env_with(openstack_sim::SimConfig {
        token_ttl: Duration::from_millis(300),
        ..config()
    })
    .await;
    let token = env.token().await;
    let get = |path: &'static str, token: String| {
        let env = &env;
        async move {
            env.call(Method::GET, path, &[("X-Auth-Token", &token)], None)
                .await
        }
    };
    assert_eq!(
        get("/compute/v2.1/servers", token.clone()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get("/container-infra/v1/clusters", token.clone())
            .await
            .status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    for path in ["/compute/v2.1/servers", "/container-infra/v1/clusters"] {
        let r = get(path, token.clone()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(r.body["error"]["code"], 401);
        assert!(
            r.header("WWW-Authenticate")
                .is_some_and(|h| h.contains(&env.sim.auth_url()))
        );
    }
    let missing = env
        .call(Method::GET, "/compute/v2.1/servers", &[], None)
        .await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    let unknown = get("/compute/v2.1/servers/detail", "not-a-token".into()).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);

    // A fresh token works again; expire_tokens ends it early.
    let fresh = env.token().await;
    assert_eq!(
        get("/compute/v2.1/servers", fresh.clone()).await.status,
        StatusCode::OK
    );
    env.sim.expire_tokens();
    assert_eq!(
        get("/compute/v2.1/servers", fresh).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn tokens_can_be_validated_and_revoked() {
    let env = env().await;
    let admin = env.token().await;
    let subject = env.token().await;
    let headers = [
        ("X-Auth-Token", admin.as_str()),
        ("X-Subject-Token", subject.as_str()),
    ];
    let r = env
        .call(Method::GET, "/identity/v3/auth/tokens", &headers, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("X-Subject-Token"), Some(subject.as_str()));
    assert_eq!(
        env.call(Method::DELETE, "/identity/v3/auth/tokens", &headers, None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        env.call(Method::GET, "/identity/v3/auth/tokens", &headers, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let with_revoked = env
        .call(
            Method::GET,
            "/compute/v2.1/servers",
            &[("X-Auth-Token", &subject)],
            None,
        )
        .await;
    assert_eq!(with_revoked.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_version_documents_are_served() {
    let env = env().await;
    let v3 = env.call(Method::GET, "/identity/v3", &[], None).await;
    assert_eq!(v3.status, StatusCode::OK);
    assert!(
        v3.body["version"]["id"]
            .as_str()
            .unwrap()
            .starts_with("v3.")
    );
    let root = env.call(Method::GET, "/identity", &[], None).await;
    assert_eq!(root.status, StatusCode::MULTIPLE_CHOICES);
    assert_eq!(root.body["versions"]["values"][0]["status"], "stable");
}

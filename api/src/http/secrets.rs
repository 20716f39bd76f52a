//! `/api/v1/secrets`: set, list and remove secrets at run time. Values go
//! in and never come out: no answer, list, audit entry or error holds one.
//!
//! Who may: an admin token anything; a write token that `maintains` a
//! repository that repository's secrets and its environments'.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::config::{ApiToken, Scope, check_filter, check_secret_value, is_variable_name};
use crate::http::auth::Writer;
use crate::http::{ApiError, AppState};
use crate::ids::now_ms;
use crate::store::{SecretFilter, SecretRecord, SecretScope};

/// Where a secret lives, as the API names it.
#[derive(Debug, Deserialize)]
pub struct Where {
    /// None: server-wide.
    repo: Option<String>,
    environment: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSecret {
    repo: Option<String>,
    environment: Option<String>,
    name: String,
    value: String,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    branches: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// A secret without its value.
#[derive(Debug, Serialize)]
pub struct SecretView {
    pub name: String,
    /// `server`, `acme/web` or `acme/web:prod`.
    pub scope: String,
    pub repo: Option<String>,
    pub environment: Option<String>,
    pub events: Vec<String>,
    pub branches: Vec<String>,
    pub tags: Vec<String>,
    /// `config` (the server's file) or `api` (set at run time).
    pub source: &'static str,
    pub set_by: Option<String>,
    pub set_ms: Option<u64>,
}

fn forbidden(m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", m)
}

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m)
}

/// The scope `repo`/`environment` name, checked against the config and
/// what `token` may manage.
fn scope_of(
    state: &AppState,
    token: &ApiToken,
    repo: Option<&str>,
    environment: Option<&str>,
) -> Result<SecretScope, ApiError> {
    let Some(repo) = repo else {
        if environment.is_some() {
            return Err(invalid("`environment` needs `repo`"));
        }
        if token.scope < Scope::Admin {
            return Err(forbidden(format!(
                "server-wide secrets need an admin token; {}'s is not",
                token.user
            )));
        }
        return Ok(SecretScope::Server);
    };
    let Some(configured) = state.config.repo(repo) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no repository `{repo}` in the server's config"),
        ));
    };
    if token.scope < Scope::Admin && !token.maintains(&configured.name) {
        return Err(forbidden(format!(
            "{} may not manage the secrets of {}: that needs an admin token, or a write token whose `maintains` lists it",
            token.user, configured.name
        )));
    }
    match environment {
        None => Ok(SecretScope::Repo {
            repo: configured.name.clone(),
        }),
        Some(env) if configured.environment(env).is_some() => Ok(SecretScope::Environment {
            repo: configured.name.clone(),
            environment: env.into(),
        }),
        Some(env) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("repository {} has no environment `{env}`", configured.name),
        )),
    }
}

/// Whether the config file defines `name` at `scope` (then it is changed
/// there, not here: the file would win anyway).
fn in_config(state: &AppState, scope: &SecretScope, name: &str) -> bool {
    let config = &state.config;
    match scope {
        SecretScope::Server => config.secrets.contains_key(name),
        SecretScope::Repo { repo } => config
            .repo(repo)
            .is_some_and(|r| r.secrets.contains_key(name)),
        SecretScope::Environment { repo, environment } => config
            .repo(repo)
            .and_then(|r| r.environment(environment))
            .is_some_and(|e| e.secrets.contains_key(name)),
    }
}

/// `PUT /api/v1/secrets`: sets (or replaces) one secret. The value is
/// sealed before it is stored; the answer is the secret without it.
pub async fn set(
    State(state): State<AppState>,
    Writer(token): Writer,
    body: Result<Json<SetSecret>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<SecretView>), ApiError> {
    let Json(body) = body.map_err(|e| invalid(body_problem(&e.body_text())))?;
    let scope = scope_of(
        &state,
        &token,
        body.repo.as_deref(),
        body.environment.as_deref(),
    )?;
    if !is_variable_name(&body.name) {
        return Err(invalid(format!(
            "name: `{}` is not a variable name (letters, digits and `_`, not starting with a digit)",
            body.name
        )));
    }
    check_secret_value(&body.value).map_err(|m| invalid(format!("value: {m}")))?;
    let filter = SecretFilter {
        events: body.events,
        branches: body.branches,
        tags: body.tags,
    };
    let mut problems = Vec::new();
    check_filter(&filter, "secret", &mut problems);
    if !problems.is_empty() {
        return Err(invalid(problems.join("; ")));
    }
    if in_config(&state, &scope, &body.name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "in_config",
            format!(
                "secret {} ({}) is defined in the server's config file; change it there",
                body.name,
                scope.label()
            ),
        ));
    }
    let sealed = state
        .vault
        .seal(&SecretRecord::binding(&scope, &body.name), &body.value);
    let record = SecretRecord {
        scope,
        name: body.name,
        filter,
        set_by: token.user.clone(),
        set_ms: now_ms(),
        sealed,
    };
    let store = state.store.clone();
    let stored = record.clone();
    let existed = tokio::task::spawn_blocking(move || {
        let existed = store.secret(&stored.scope, &stored.name)?.is_some();
        store.set_secret(&stored).map(|()| existed)
    })
    .await
    .map_err(ApiError::internal)??;
    tracing::info!(secret = %record.name, scope = %record.scope.label(), user = %token.user, "secret set");
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(stored_view(&record))))
}

/// What is wrong with a body that did not parse, without quoting it:
/// serde's message can carry the value back (`invalid type: integer
/// `1234``), so only a field's name is repeated, never what was sent.
fn body_problem(serde_text: &str) -> String {
    let shape = "the body must be JSON {\"name\", \"value\" (strings), optional \"repo\", \"environment\" (strings), \"events\", \"branches\", \"tags\" (lists of strings)}";
    for kind in ["unknown field `", "missing field `"] {
        if let Some(rest) = serde_text.split(kind).nth(1)
            && let Some(field) = rest.split('`').next()
            && field.len() <= 64
            && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return format!("{shape}: {kind}{field}`");
        }
    }
    format!("{shape}: it is not")
}

fn stored_view(r: &SecretRecord) -> SecretView {
    SecretView {
        name: r.name.clone(),
        scope: r.scope.label(),
        repo: r.scope.repo().map(Into::into),
        environment: r.scope.environment().map(Into::into),
        events: r.filter.events.clone(),
        branches: r.filter.branches.clone(),
        tags: r.filter.tags.clone(),
        source: "api",
        set_by: Some(r.set_by.clone()),
        set_ms: Some(r.set_ms),
    }
}

fn config_view(scope: SecretScope, name: &str, filter: &SecretFilter) -> SecretView {
    SecretView {
        name: name.into(),
        scope: scope.label(),
        repo: scope.repo().map(Into::into),
        environment: scope.environment().map(Into::into),
        events: filter.events.clone(),
        branches: filter.branches.clone(),
        tags: filter.tags.clone(),
        source: "config",
        set_by: None,
        set_ms: None,
    }
}

/// `GET /api/v1/secrets?repo=`: the secrets `token` may manage (of `repo`
/// only, when given), from the config file and set at run time: names,
/// scopes, filters, who set them and when. Never a value.
pub async fn list(
    State(state): State<AppState>,
    Writer(token): Writer,
    Query(q): Query<Where>,
) -> Result<Json<Vec<SecretView>>, ApiError> {
    let may = |scope: &SecretScope| match scope.repo() {
        None => token.scope >= Scope::Admin,
        Some(r) => token.scope >= Scope::Admin || token.maintains(r),
    };
    let wanted = |scope: &SecretScope| match (&q.repo, scope.repo()) {
        (None, _) => true,
        (Some(w), Some(r)) => w.eq_ignore_ascii_case(r),
        (Some(_), None) => false,
    };
    let mut out = Vec::new();
    let config = &state.config;
    for (name, s) in &config.secrets {
        out.push((
            SecretScope::Server,
            config_view(SecretScope::Server, name, &s.filter),
        ));
    }
    for repo in &config.repos {
        let scope = SecretScope::Repo {
            repo: repo.name.clone(),
        };
        for (name, s) in &repo.secrets {
            out.push((scope.clone(), config_view(scope.clone(), name, &s.filter)));
        }
        for env in &repo.environments {
            let scope = SecretScope::Environment {
                repo: repo.name.clone(),
                environment: env.name.clone(),
            };
            for (name, s) in &env.secrets {
                out.push((scope.clone(), config_view(scope.clone(), name, &s.filter)));
            }
        }
    }
    let store = state.store.clone();
    let stored = tokio::task::spawn_blocking(move || store.secrets())
        .await
        .map_err(ApiError::internal)??;
    out.extend(stored.iter().map(|r| (r.scope.clone(), stored_view(r))));
    Ok(Json(
        out.into_iter()
            .filter(|(scope, _)| may(scope) && wanted(scope))
            .map(|(_, view)| view)
            .collect(),
    ))
}

/// `DELETE /api/v1/secrets?repo=&environment=&name=`: 204, or 404 when no
/// such secret was set at run time.
pub async fn remove(
    State(state): State<AppState>,
    Writer(token): Writer,
    Query(q): Query<Where>,
) -> Result<StatusCode, ApiError> {
    let scope = scope_of(&state, &token, q.repo.as_deref(), q.environment.as_deref())?;
    let Some(name) = q.name else {
        return Err(invalid("give `name`"));
    };
    if in_config(&state, &scope, &name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "in_config",
            format!(
                "secret {name} ({}) is defined in the server's config file; remove it there",
                scope.label()
            ),
        ));
    }
    let store = state.store.clone();
    let (user, label, n) = (token.user.clone(), scope.label(), name.clone());
    let removed = tokio::task::spawn_blocking(move || store.remove_secret(&scope, &n, &user))
        .await
        .map_err(ApiError::internal)??;
    if removed {
        tracing::info!(secret = %name, scope = %label, user = %token.user, "secret removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no secret {name} was set for {label}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::body_problem;

    #[test]
    fn a_body_that_does_not_parse_is_never_quoted_back() {
        let said = body_problem(
            "Failed to deserialize the JSON body into the target type: value: invalid type: integer `98765`, expected a string at line 1 column 30",
        );
        assert!(!said.contains("98765"), "{said}");
        assert!(
            body_problem("unknown field `valu`, expected one of").ends_with("unknown field `valu`")
        );
        assert!(body_problem("missing field `name` at line 1").ends_with("missing field `name`"));
    }
}

//! The HTTP routes, in Confluent's shapes: JSON in any content type, JSON out with Confluent's
//! content type, and Confluent-shaped errors for everything (unknown routes and bad bodies too).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use fanout_schema_registry::protocol::{
    Compatibility, CompatibilityCheck, Config, ConfigUpdate, Mode, ModeBody, RegisteredSchema, SchemaId,
    SchemaType, SubjectAndVersion, SubjectVersion, UnregisteredSchema, Version, CONTENT_TYPE,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::election::{Election, Leader};
use crate::error::ApiError;
use crate::service::{self, Found};
use crate::state::StoredSchema;
use crate::store::Store;

type AppState = Arc<Store>;
type ApiResult = Result<Response, ApiError>;

/// The header a forwarded write carries, so the instance it reaches applies it rather than
/// forwarding it again (leadership may have moved meanwhile; the fold keeps that safe).
const FORWARDED: &str = "x-fanout-registry-forwarded";
/// How long a write waits for an election to end before it is refused.
const ELECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// The largest body forwarded (Confluent's default request limit is far below).
const FORWARD_LIMIT: usize = 16 * 1024 * 1024;

/// What the forwarding layer needs: who leads, and a client to reach the leader with.
#[derive(Debug)]
struct Forwarding {
    election: Arc<Election>,
    http: reqwest::Client,
}

/// Every route of the registry, with writes sent to the elected leader.
pub fn router(store: Arc<Store>, election: Arc<Election>, http: reqwest::Client) -> Router {
    let forwarding = Arc::new(Forwarding { election: election.clone(), http });
    routes(store)
        .route(
            "/v1/metadata/leader",
            get(move || {
                let election = election.clone();
                async move {
                    let leader = match election.leader() {
                        Leader::Me => Some(election.me().to_owned()),
                        Leader::At(url) => Some(url),
                        Leader::Unknown => None,
                    };
                    json(&serde_json::json!({"leader": leader, "self": election.me()}))
                }
            }),
        )
        .layer(middleware::from_fn_with_state(forwarding, forward_writes))
}

/// Whether a request changes the registry: every PUT and DELETE, and a registration (a POST to
/// a subject's versions; the other POSTs are lookups and compatibility tests).
fn is_write(method: &Method, path: &str) -> bool {
    match *method {
        Method::PUT | Method::DELETE => true,
        Method::POST => {
            let mut parts = path.trim_matches('/').split('/');
            matches!(
                (parts.next(), parts.next(), parts.next(), parts.next()),
                (Some("subjects"), Some(_), Some("versions"), None)
            )
        }
        _ => false,
    }
}

async fn forward_writes(State(forwarding): State<Arc<Forwarding>>, request: Request, next: Next) -> Response {
    if !is_write(request.method(), request.uri().path()) || request.headers().contains_key(FORWARDED) {
        return next.run(request).await;
    }
    match forwarding.election.known_leader(ELECTION_WAIT).await {
        Leader::Me => next.run(request).await,
        Leader::Unknown => ApiError::unknown_leader(ELECTION_WAIT).into_response(),
        Leader::At(leader) => match forward(&forwarding.http, &leader, request).await {
            Ok(response) => response,
            Err(reason) => ApiError::forwarding_failed(&leader, reason).into_response(),
        },
    }
}

/// Sends `request` to the leader as it came (method, path, query, body, content type and
/// credentials) and answers what the leader answered.
async fn forward(http: &reqwest::Client, leader: &str, request: Request) -> Result<Response, String> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, FORWARD_LIMIT).await.map_err(|e| e.to_string())?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).map_err(|e| e.to_string())?;
    let mut outgoing = http.request(method, format!("{}{path}", leader.trim_end_matches('/'))).body(body);
    for name in [header::CONTENT_TYPE, header::ACCEPT, header::AUTHORIZATION] {
        if let Some(value) = parts.headers.get(&name) {
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = outgoing.header(FORWARDED, "1").send().await.map_err(|e| fanout_core::report(&e))?;
    let status = StatusCode::from_u16(answer.status().as_u16()).map_err(|e| e.to_string())?;
    let content_type = answer.headers().get(reqwest::header::CONTENT_TYPE).map(|v| v.as_bytes().to_vec());
    let bytes = answer.bytes().await.map_err(|e| fanout_core::report(&e))?;
    let mut response = (status, bytes).into_response();
    if let Some(value) = content_type.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    Ok(response)
}

/// The registry's own routes.
fn routes(store: Arc<Store>) -> Router {
    Router::new()
        .route("/", get(|| async { json(&serde_json::json!({})) }))
        .route("/schemas/types", get(|| async { json(&[SchemaType::Avro]) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_by_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_by_id))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(list_versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(get_version).delete(delete_version))
        .route("/subjects/{subject}/versions/{version}/schema", get(get_raw_schema))
        .route("/config", get(get_global_config).put(put_global_config).delete(delete_global_config))
        .route("/config/{subject}", get(get_config).put(put_config).delete(delete_config))
        .route("/mode", get(get_global_mode).put(put_global_mode))
        .route("/mode/{subject}", get(get_mode).put(put_mode).delete(delete_mode))
        .route("/compatibility/subjects/{subject}/versions", post(compatibility_all))
        .route("/compatibility/subjects/{subject}/versions/{version}", post(compatibility_one))
        // Newer Confluent clients probe for subject associations first and fall back on 40410.
        .route("/associations", any(|| async { ApiError::association_not_found() }))
        .route("/associations/{*rest}", any(|| async { ApiError::association_not_found() }))
        .fallback(|| async { ApiError::not_found_route() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .with_state(store)
}

/// A JSON answer with Confluent's content type.
fn json<T: Serialize + ?Sized>(body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = (StatusCode::OK, bytes).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            response
        }
        Err(e) => ApiError::store(e).into_response(),
    }
}

/// Path parameters, percent-decoded (`%2F` becomes `/`), with Confluent-shaped rejections.
struct ApiPath<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(ApiError::unprocessable)
    }
}

/// Query parameters. Unknown ones are ignored; booleans arrive as `true`/`True`/`TRUE`.
struct Params(HashMap<String, String>);

impl Params {
    fn flag(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(map)| Params(map))
            .map_err(ApiError::unprocessable)
    }
}

/// A JSON body whatever the Content-Type says (or without one).
pub(crate) struct Body<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state).await.map_err(ApiError::unprocessable)?;
        serde_json::from_slice(&bytes).map(Body).map_err(ApiError::unprocessable)
    }
}

fn parse_version(raw: &str) -> Result<Version, ApiError> {
    Version::parse(raw).ok_or_else(|| ApiError::invalid_version(raw))
}

fn parse_id(raw: &str) -> Result<u32, ApiError> {
    raw.parse().map_err(|_| ApiError::schema_not_found(raw))
}

fn schema_body(id: u32, stored: &StoredSchema) -> RegisteredSchema {
    RegisteredSchema {
        id,
        schema: stored.schema.clone(),
        schema_type: stored.schema_type,
        references: stored.references.clone(),
    }
}

fn version_body(found: Found) -> Response {
    json(&SubjectVersion {
        subject: found.subject,
        id: found.id,
        version: found.version,
        schema: found.schema.schema,
        schema_type: found.schema.schema_type,
        references: found.schema.references,
    })
}

async fn schema_by_id(State(store): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let state = store.state();
    let stored = state.schema(id).ok_or_else(|| ApiError::schema_not_found(id))?;
    Ok(json(&schema_body(id, stored)))
}

async fn raw_schema_by_id(State(store): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let state = store.state();
    let stored = state.schema(id).ok_or_else(|| ApiError::schema_not_found(id))?;
    Ok(raw(&stored.schema))
}

/// The schema text itself as the body, as Confluent's `/schema` routes answer.
fn raw(schema: &str) -> Response {
    let mut response = (StatusCode::OK, schema.to_owned()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

async fn versions_by_id(
    State(store): State<AppState>,
    ApiPath(id): ApiPath<String>,
    params: Params,
) -> ApiResult {
    let id = parse_id(&id)?;
    let state = store.state();
    if state.schema(id).is_none() {
        return Err(ApiError::schema_not_found(id));
    }
    let usages = state.usages(id);
    let visible: Vec<SubjectAndVersion> = usages
        .into_iter()
        .filter(|(_, _, deleted)| params.flag("deleted") || !deleted)
        .map(|(subject, version, _)| SubjectAndVersion { subject, version })
        .collect();
    Ok(json(&visible))
}

async fn subjects_by_id(
    State(store): State<AppState>,
    ApiPath(id): ApiPath<String>,
    params: Params,
) -> ApiResult {
    let id = parse_id(&id)?;
    let state = store.state();
    if state.schema(id).is_none() {
        return Err(ApiError::schema_not_found(id));
    }
    let mut subjects: Vec<String> = state
        .usages(id)
        .into_iter()
        .filter(|(_, _, deleted)| params.flag("deleted") || !deleted)
        .map(|(subject, _, _)| subject)
        .collect();
    subjects.dedup();
    Ok(json(&subjects))
}

async fn list_subjects(State(store): State<AppState>, params: Params) -> Response {
    let prefix = params.0.get("subjectPrefix").map(String::as_str).unwrap_or("");
    let subjects: Vec<String> = store
        .state()
        .subjects(params.flag("deleted"))
        .into_iter()
        .filter(|s| s.starts_with(prefix))
        .collect();
    json(&subjects)
}

async fn list_versions(
    State(store): State<AppState>,
    ApiPath(subject): ApiPath<String>,
    params: Params,
) -> ApiResult {
    let versions = store
        .state()
        .versions(&subject, params.flag("deleted"))
        .ok_or_else(|| ApiError::subject_not_found(&subject))?;
    Ok(json(&versions.iter().map(|(v, _)| *v).collect::<Vec<_>>()))
}

async fn register(
    State(store): State<AppState>,
    ApiPath(subject): ApiPath<String>,
    Body(request): Body<UnregisteredSchema>,
) -> ApiResult {
    let id = service::register(&store, &subject, &request).await?;
    Ok(json(&SchemaId { id }))
}

async fn lookup(
    State(store): State<AppState>,
    ApiPath(subject): ApiPath<String>,
    params: Params,
    Body(request): Body<UnregisteredSchema>,
) -> ApiResult {
    let found = service::lookup(&store, &subject, &request, params.flag("deleted"))?;
    Ok(version_body(found))
}

async fn get_version(
    State(store): State<AppState>,
    ApiPath((subject, version)): ApiPath<(String, String)>,
    params: Params,
) -> ApiResult {
    let spec = parse_version(&version)?;
    let found = service::get_version(&store, &subject, spec, &version, params.flag("deleted"))?;
    Ok(version_body(found))
}

async fn get_raw_schema(
    State(store): State<AppState>,
    ApiPath((subject, version)): ApiPath<(String, String)>,
    params: Params,
) -> ApiResult {
    let spec = parse_version(&version)?;
    let found = service::get_version(&store, &subject, spec, &version, params.flag("deleted"))?;
    Ok(raw(&found.schema.schema))
}

async fn delete_subject(
    State(store): State<AppState>,
    ApiPath(subject): ApiPath<String>,
    params: Params,
) -> ApiResult {
    let versions = service::delete_subject(&store, &subject, params.flag("permanent")).await?;
    Ok(json(&versions))
}

async fn delete_version(
    State(store): State<AppState>,
    ApiPath((subject, version)): ApiPath<(String, String)>,
    params: Params,
) -> ApiResult {
    let spec = parse_version(&version)?;
    let deleted = service::delete_version(&store, &subject, spec, &version, params.flag("permanent")).await?;
    Ok(json(&deleted))
}

fn compatibility_body(messages: Vec<String>, verbose: bool) -> Response {
    json(&CompatibilityCheck { is_compatible: messages.is_empty(), messages: verbose.then_some(messages) })
}

async fn compatibility_all(
    State(store): State<AppState>,
    ApiPath(subject): ApiPath<String>,
    params: Params,
    Body(request): Body<UnregisteredSchema>,
) -> ApiResult {
    let messages = service::test_compatibility(&store, &subject, None, &request)?;
    Ok(compatibility_body(messages, params.flag("verbose")))
}

async fn compatibility_one(
    State(store): State<AppState>,
    ApiPath((subject, version)): ApiPath<(String, String)>,
    params: Params,
    Body(request): Body<UnregisteredSchema>,
) -> ApiResult {
    let spec = parse_version(&version)?;
    let messages = service::test_compatibility(&store, &subject, Some((spec, &version)), &request)?;
    Ok(compatibility_body(messages, params.flag("verbose")))
}

fn config_body(level: Compatibility) -> Response {
    json(&Config { compatibility_level: level })
}

async fn get_global_config(State(store): State<AppState>) -> Response {
    config_body(store.state().global_config().unwrap_or_default())
}

async fn get_config(
    State(store): State<AppState>,
    ApiPath(subject): ApiPath<String>,
    params: Params,
) -> ApiResult {
    let state = store.state();
    let level = match state.subject_config(&subject) {
        Some(level) => level,
        None if params.flag("defaultToGlobal") => state.global_config().unwrap_or_default(),
        None => return Err(ApiError::config_not_set(&subject)),
    };
    Ok(config_body(level))
}

async fn update_config(store: &Store, subject: Option<&str>, update: ConfigUpdate<String>) -> ApiResult {
    let level = Compatibility::parse(&update.compatibility)
        .ok_or_else(|| ApiError::invalid_compatibility(&update.compatibility))?;
    service::set_config(store, subject, Some(level)).await?;
    Ok(json(&ConfigUpdate { compatibility: level }))
}

async fn put_global_config(
    State(store): State<AppState>,
    Body(update): Body<ConfigUpdate<String>>,
) -> ApiResult {
    update_config(&store, None, update).await
}

async fn put_config(
    State(store): State<AppState>,
    ApiPath(subject): ApiPath<String>,
    Body(update): Body<ConfigUpdate<String>>,
) -> ApiResult {
    update_config(&store, Some(&subject), update).await
}

async fn delete_global_config(State(store): State<AppState>) -> ApiResult {
    let before = service::set_config(&store, None, None).await?;
    Ok(config_body(before.unwrap_or_default()))
}

async fn delete_config(State(store): State<AppState>, ApiPath(subject): ApiPath<String>) -> ApiResult {
    if store.state().subject_config(&subject).is_none() {
        return Err(ApiError::config_not_set(&subject));
    }
    let before = service::set_config(&store, Some(&subject), None).await?;
    Ok(config_body(before.unwrap_or_default()))
}

fn mode_body(mode: Mode) -> Response {
    json(&ModeBody { mode })
}

async fn get_global_mode(State(store): State<AppState>) -> Response {
    mode_body(store.state().global_mode().unwrap_or_default())
}

async fn get_mode(
    State(store): State<AppState>,
    ApiPath(subject): ApiPath<String>,
    params: Params,
) -> ApiResult {
    let state = store.state();
    let mode = match state.subject_mode(&subject) {
        Some(mode) => mode,
        None if params.flag("defaultToGlobal") => state.global_mode().unwrap_or_default(),
        None => return Err(ApiError::mode_not_set(&subject)),
    };
    Ok(mode_body(mode))
}

async fn update_mode(store: &Store, subject: Option<&str>, update: ModeBody<String>) -> ApiResult {
    let mode = Mode::parse(&update.mode).ok_or_else(|| ApiError::invalid_mode(&update.mode))?;
    if subject.is_some() && mode == Mode::ReadOnlyOverride {
        return Err(ApiError::invalid_mode(&update.mode));
    }
    service::set_mode(store, subject, Some(mode)).await?;
    Ok(mode_body(mode))
}

async fn put_global_mode(State(store): State<AppState>, Body(update): Body<ModeBody<String>>) -> ApiResult {
    update_mode(&store, None, update).await
}

async fn put_mode(
    State(store): State<AppState>,
    ApiPath(subject): ApiPath<String>,
    Body(update): Body<ModeBody<String>>,
) -> ApiResult {
    update_mode(&store, Some(&subject), update).await
}

async fn delete_mode(State(store): State<AppState>, ApiPath(subject): ApiPath<String>) -> ApiResult {
    if store.state().subject_mode(&subject).is_none() {
        return Err(ApiError::mode_not_set(&subject));
    }
    let before = service::set_mode(&store, Some(&subject), None).await?;
    Ok(mode_body(before.unwrap_or_default()))
}

//! HTTP basic authentication with a read and a write role, in front of every route.
//!
//! Passwords are kept as argon2 PHC strings. Checking one costs tens of milliseconds of CPU on
//! purpose, and clients send their credentials with every request, so a password that verified
//! once is remembered as a keyed SHA-256 of it (the key random per process): a later request with
//! the same password costs one hash and a constant-time comparison. A wrong password pays the
//! full argon2 check every time, and so does an unknown user name (against a hash made at start),
//! so the answer's timing does not tell which names exist.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHashString, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{RegistryUser, Role};
use crate::error::{ApiError, RegistryError};

/// The realm named in `WWW-Authenticate`.
pub(crate) const REALM: &str = "fanout-registry";

/// The registry's users, ready to check requests against.
pub(crate) struct Users {
    accounts: HashMap<String, Account>,
    /// Checked for a name no account has, so that an unknown name costs what a wrong password does.
    decoy: PasswordHashString,
    /// Keys the digests of verified passwords.
    key: [u8; 32],
}

struct Account {
    role: Role,
    hash: PasswordHashString,
    /// The keyed digest of the password that last verified.
    verified: Mutex<Option<[u8; 32]>>,
}

impl Users {
    /// The users of the configuration; `None` when there are none (the registry is open). Every
    /// hash must be an argon2 PHC string, and names unique and non-empty.
    pub(crate) fn new(users: &[RegistryUser]) -> Result<Option<Arc<Self>>, RegistryError> {
        if users.is_empty() {
            return Ok(None);
        }
        let mut accounts = HashMap::new();
        for user in users {
            let invalid = |reason: String| RegistryError::InvalidUser { name: user.name.clone(), reason };
            if user.name.is_empty() || user.name.contains(':') {
                return Err(invalid("a user name must be non-empty and without ':'".into()));
            }
            let hash = PasswordHashString::new(user.password_hash.expose()).map_err(|e| {
                invalid(format!("password_hash is not a PHC string such as $argon2id$v=19$... ({e})"))
            })?;
            if argon2::Algorithm::new(hash.algorithm().as_str()).is_err() {
                return Err(invalid(format!(
                    "password_hash uses {}, not argon2id, argon2i or argon2d",
                    hash.algorithm()
                )));
            }
            let account = Account { role: user.role, hash, verified: Mutex::new(None) };
            if accounts.insert(user.name.clone(), account).is_some() {
                return Err(invalid("the name is configured twice".into()));
            }
        }
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        let mut decoy_password = [0u8; 16];
        OsRng.fill_bytes(&mut decoy_password);
        let decoy = hash(&decoy_password)?;
        Ok(Some(Arc::new(Self { accounts, decoy, key })))
    }

    /// The role of `name` when `password` is theirs.
    async fn authenticate(self: &Arc<Self>, name: &str, password: &str) -> Option<Role> {
        let digest = self.digest(password);
        if let Some(account) = self.accounts.get(name) {
            let remembered = account.verified.lock().map(|guard| *guard).unwrap_or(None);
            if remembered.is_some_and(|known| bool::from(known.ct_eq(&digest))) {
                return Some(account.role);
            }
        }
        let users = Arc::clone(self);
        let (name, password) = (name.to_owned(), password.to_owned());
        // argon2 is CPU work of tens of milliseconds: not on the runtime's threads.
        let checked = tokio::task::spawn_blocking(move || {
            let account = users.accounts.get(&name);
            let hash = account.map_or(&users.decoy, |account| &account.hash);
            let matches =
                Argon2::default().verify_password(password.as_bytes(), &hash.password_hash()).is_ok();
            match account {
                Some(account) if matches => {
                    if let Ok(mut verified) = account.verified.lock() {
                        *verified = Some(digest);
                    }
                    Some(account.role)
                }
                _ => None,
            }
        })
        .await;
        checked.unwrap_or(None)
    }

    fn digest(&self, password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.key);
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }
}

/// An argon2id hash of `password` with a random salt and argon2's default cost (OWASP's first
/// choice: 19 MiB, 2 passes, 1 lane), as a PHC string for a user's `password_hash`
/// (`$argon2id$v=19$m=19456,t=2,p=1$...`). `fanout registry hash-password` prints one.
pub fn hash_password(password: &str) -> Result<String, RegistryError> {
    hash(password.as_bytes()).map(|hash| hash.to_string())
}

fn hash(password: &[u8]) -> Result<PasswordHashString, RegistryError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password, &salt)
        .map(|hash| hash.serialize())
        .map_err(|e| RegistryError::PasswordHash(e.to_string()))
}

/// The role a request needs. Only an allow-list of routes are reads; anything else, routes added
/// later included, needs the write role (fail closed).
pub(crate) fn needed_role(method: &Method, path: &str) -> Role {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let read = match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => true,
        // A lookup (`POST /subjects/{subject}`) and a compatibility test change nothing.
        Method::POST => matches!(segments.as_slice(), ["subjects", _] | ["compatibility", ..]),
        _ => false,
    };
    if read {
        Role::Read
    } else {
        Role::Write
    }
}

/// The middleware: 401 without valid credentials, 403 without the role the route needs.
pub(crate) async fn check(State(users): State<Arc<Users>>, request: Request, next: Next) -> Response {
    let Some((name, password)) = credentials(&request) else {
        tracing::info!(method = %request.method(), path = %request.uri().path(), "registry request without basic credentials refused");
        return unauthorized(ApiError::unauthorized("this registry needs HTTP basic credentials"));
    };
    let Some(role) = users.authenticate(&name, &password).await else {
        tracing::warn!(user = %name, method = %request.method(), path = %request.uri().path(), "registry credentials refused");
        return unauthorized(ApiError::unauthorized(&format!(
            "the user name or password of '{name}' was not accepted"
        )));
    };
    let needed = needed_role(request.method(), request.uri().path());
    if role < needed {
        tracing::warn!(user = %name, role = role.as_str(), method = %request.method(), path = %request.uri().path(), "registry request refused: the write role is needed");
        return ApiError::forbidden(&name, request.method(), request.uri().path()).into_response();
    }
    next.run(request).await
}

fn unauthorized(error: ApiError) -> Response {
    let mut response = error.into_response();
    let challenge = format!("Basic realm=\"{REALM}\"");
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The user name and password of an `Authorization: Basic` header; `None` when there is none or
/// it is malformed.
fn credentials(request: &Request) -> Option<(String, String)> {
    let value = request.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_routes_are_reads() {
        for (method, path) in [
            (Method::GET, "/subjects/orders-value/versions/latest"),
            (Method::GET, "/config"),
            (Method::POST, "/subjects/orders-value"),
            (Method::POST, "/subjects/a%2Fversions"),
            (Method::POST, "/compatibility/subjects/orders-value/versions/latest"),
        ] {
            assert_eq!(needed_role(&method, path), Role::Read, "{method} {path}");
        }
        for (method, path) in [
            (Method::POST, "/subjects/orders-value/versions"),
            (Method::DELETE, "/subjects/orders-value"),
            (Method::PUT, "/config"),
            (Method::PUT, "/mode/orders-value"),
            (Method::POST, "/somewhere/new"),
            (Method::PATCH, "/subjects/orders-value"),
        ] {
            assert_eq!(needed_role(&method, path), Role::Write, "{method} {path}");
        }
    }

    #[test]
    fn hashes_must_be_argon2_phc_strings_and_names_unique() {
        let user = |name: &str, hash: &str| RegistryUser {
            name: name.into(),
            role: Role::Read,
            password_hash: fanout_core::Secret::new(hash),
        };
        let good = hash_password("pw").expect("hashes");
        assert!(Users::new(&[]).expect("no users").is_none());
        assert!(Users::new(&[user("a", &good)]).expect("one user").is_some());
        let err = Users::new(&[user("a", "hunter2")]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("'a'") && err.contains("PHC"), "{err}");
        let bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
        assert!(Users::new(&[user("a", bcrypt)]).is_err());
        let err = Users::new(&[user("a", &good), user("a", &good)]).err().map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("twice"));
        assert!(Users::new(&[user("a:b", &good)]).is_err());
    }

    #[tokio::test]
    async fn a_password_verifies_and_a_wrong_one_or_an_unknown_name_does_not() {
        let users = Users::new(&[RegistryUser {
            name: "ci".into(),
            role: Role::Write,
            password_hash: fanout_core::Secret::new(hash_password("right").expect("hashes")),
        }])
        .expect("valid")
        .expect("some");
        assert_eq!(users.authenticate("ci", "right").await, Some(Role::Write));
        // Remembered now; still refused when wrong.
        assert_eq!(users.authenticate("ci", "right").await, Some(Role::Write));
        assert_eq!(users.authenticate("ci", "wrong").await, None);
        assert_eq!(users.authenticate("nobody", "right").await, None);
    }
}

//! How to run a registry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use fanout_core::Secret;
use serde::{Deserialize, Serialize};

/// The topic Confluent's registry uses; the default here too.
pub const DEFAULT_TOPIC: &str = "_schemas";

/// Where the registry keeps its state and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Kafka `bootstrap.servers`.
    pub bootstrap: String,
    /// The compacted topic holding every schema, config and mode; created when absent.
    pub topic: String,
    /// Replication factor used when creating the topic (ignored when it exists); `None` takes the
    /// broker's `default.replication.factor`, so a replicated cluster replicates the registry too.
    pub replication_factor: Option<i32>,
    /// The HTTP address to listen on; port 0 picks a free port (see
    /// [`RunningRegistry::local_addr`](crate::RunningRegistry::local_addr)).
    pub listen: SocketAddr,
    /// The URL other instances forward writes to when this one leads (its `client.id` in the
    /// election group); `None` advertises the address it listens on (127.0.0.1 when that is
    /// 0.0.0.0: set it when instances run on several hosts).
    pub advertised_url: Option<String>,
    /// Extra librdkafka properties (security, timeouts) for every client the registry creates.
    /// `acks` and `enable.idempotence` are always forced to `all` / `true`.
    pub kafka_properties: BTreeMap<String, String>,
    /// Who may call the registry and whether it serves HTTPS; open, plain HTTP by default.
    pub security: RegistrySecurity,
}

/// Basic-auth users and TLS: the `[registry_server]` section of `fanout registry serve`'s file.
///
/// ```toml
/// [registry_server.tls]
/// cert_path = "/etc/fanout/registry.crt"   # PEM: the certificate, then any intermediates
/// key_path = "/etc/fanout/registry.key"    # PEM: PKCS#8, PKCS#1 or SEC1
/// ca_cert_path = "/etc/fanout/ca.crt"      # the CA of the other instances' certificates
///
/// [[registry_server.users]]
/// name = "orders-service"
/// role = "read"                            # GET, lookups, compatibility tests
/// password_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."   # `fanout registry hash-password`
///
/// [[registry_server.users]]
/// name = "schema-ci"
/// role = "write"                           # also registers, deletes, changes config and mode
/// password_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."
/// ```
///
/// With no user every request is served, as before; with one or more, every request needs the
/// credentials of one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySecurity {
    /// The users allowed in, each with a role. Empty: no authentication.
    pub users: Vec<RegistryUser>,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<TlsFiles>,
}

/// One basic-auth user of the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryUser {
    /// The user name clients send.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// The password's argon2 hash as a PHC string (`$argon2id$v=19$...`), never the password
    /// itself; `fanout registry hash-password` writes one.
    pub password_hash: Secret,
}

/// What a registry user may do, as Confluent's registry divides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: every `GET`, plus the two `POST`s that change nothing (looking a schema up under a
    /// subject, testing compatibility) — what a producer with `schema = "lookup"` and every
    /// consumer need.
    Read,
    /// Reads, and every change: registering, deleting, compatibility levels and modes.
    Write,
}

impl Role {
    /// `read` or `write`, as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
        }
    }
}

/// The PEM files of a registry served over HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The server certificate, followed by any intermediates (PEM).
    pub cert_path: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// The CA that signed the other instances' certificates (PEM), trusted when a follower
    /// forwards a write to the leader. Without it only the public web roots are trusted, so
    /// instances with certificates of a private CA could not forward to each other.
    #[serde(default)]
    pub ca_cert_path: Option<PathBuf>,
}

impl RegistryConfig {
    /// A config with the default topic `_schemas`, the broker's default replication, no extra
    /// properties, no users and plain HTTP.
    pub fn new(bootstrap: impl Into<String>, listen: SocketAddr) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            topic: DEFAULT_TOPIC.to_owned(),
            replication_factor: None,
            listen,
            advertised_url: None,
            kafka_properties: BTreeMap::new(),
            security: RegistrySecurity::default(),
        }
    }

    /// Replaces the topic name.
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        self
    }

    /// Replaces the users and TLS files.
    pub fn with_security(mut self, security: RegistrySecurity) -> Self {
        self.security = security;
        self
    }
}

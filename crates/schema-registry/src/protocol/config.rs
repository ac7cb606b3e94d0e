//! Compatibility levels and modes, the bodies that set and read them, and the answer of a
//! compatibility test.

use serde::{Deserialize, Serialize};

/// Compatibility levels, as Confluent names them. `BACKWARD` is the registry's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    /// New schemas can read data written with the latest one.
    #[default]
    Backward,
    /// ... with every earlier one.
    BackwardTransitive,
    /// The latest schema can read data written with new ones.
    Forward,
    /// ... every earlier one can.
    ForwardTransitive,
    /// Backward and forward against the latest.
    Full,
    /// Backward and forward against every earlier one.
    FullTransitive,
    /// No check.
    None,
}

impl Compatibility {
    /// Every level.
    pub const ALL: [Compatibility; 7] = [
        Compatibility::None,
        Compatibility::Backward,
        Compatibility::BackwardTransitive,
        Compatibility::Forward,
        Compatibility::ForwardTransitive,
        Compatibility::Full,
        Compatibility::FullTransitive,
    ];

    /// The Confluent name, e.g. `FULL_TRANSITIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compatibility::None => "NONE",
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Reads a Confluent name, ignoring case (clients send both `full` and `FULL`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|level| level.as_str().eq_ignore_ascii_case(name))
    }

    /// Whether the level concerns every earlier version, not only the latest.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            Compatibility::BackwardTransitive
                | Compatibility::ForwardTransitive
                | Compatibility::FullTransitive
        )
    }

    /// Whether a new schema must read data written with the versions concerned.
    pub fn checks_backward(self) -> bool {
        matches!(
            self,
            Compatibility::Backward
                | Compatibility::BackwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }

    /// Whether the versions concerned must read data written with a new schema.
    pub fn checks_forward(self) -> bool {
        matches!(
            self,
            Compatibility::Forward
                | Compatibility::ForwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }
}

/// What `GET /config` and `DELETE /config` answer. Not the field name `PUT` uses (see
/// [`ConfigUpdate`]); either is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The level.
    #[serde(rename = "compatibilityLevel", alias = "compatibility")]
    pub compatibility_level: Compatibility,
}

/// The body of `PUT /config`, which the registry echoes. A server reads the level as a `String`
/// (`ConfigUpdate<String>`) to answer an unknown name with 42203 rather than a parse error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigUpdate<L = Compatibility> {
    /// The level to set.
    #[serde(alias = "compatibilityLevel")]
    pub compatibility: L,
}

/// The answer of a compatibility test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompatibilityCheck {
    /// Whether the schema may be registered.
    pub is_compatible: bool,
    /// The registry's reasons, present when asked for (`verbose=true`); empty when compatible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<String>>,
}

/// Registry mode, global or per subject. `IMPORT` is not modelled: Fanout's registry always
/// assigns ids itself.
#[allow(clippy::enum_variant_names)] // Confluent's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Mode {
    /// Normal operation.
    #[default]
    #[serde(rename = "READWRITE")]
    ReadWrite,
    /// Registrations and deletions are refused.
    #[serde(rename = "READONLY")]
    ReadOnly,
    /// Global only: read-only whatever the subjects say.
    #[serde(rename = "READONLY_OVERRIDE")]
    ReadOnlyOverride,
}

impl Mode {
    /// The Confluent name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ReadWrite => "READWRITE",
            Mode::ReadOnly => "READONLY",
            Mode::ReadOnlyOverride => "READONLY_OVERRIDE",
        }
    }

    /// Reads a Confluent name, ignoring case.
    pub fn parse(name: &str) -> Option<Self> {
        [Mode::ReadWrite, Mode::ReadOnly, Mode::ReadOnlyOverride]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(name))
    }

    /// Whether writes to subjects are refused under this mode.
    pub fn is_read_only(self) -> bool {
        self != Mode::ReadWrite
    }
}

/// The body of `GET`, `PUT` and `DELETE` on `/mode`. A server reads it as `ModeBody<String>`
/// to answer an unknown name with 42204.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeBody<M = Mode> {
    /// The mode.
    pub mode: M,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_case_insensitively_and_agree_with_serde() {
        assert_eq!(Compatibility::parse("full_transitive"), Some(Compatibility::FullTransitive));
        assert_eq!(Compatibility::parse("SIDEWAYS"), None);
        for level in Compatibility::ALL {
            assert_eq!(Compatibility::parse(level.as_str()), Some(level));
            assert_eq!(serde_json::to_value(level).expect("serialises"), level.as_str());
        }
        for mode in [Mode::ReadWrite, Mode::ReadOnly, Mode::ReadOnlyOverride] {
            assert_eq!(Mode::parse(&mode.as_str().to_lowercase()), Some(mode));
            assert_eq!(serde_json::to_value(mode).expect("serialises"), mode.as_str());
        }
        assert_eq!(Mode::parse("IMPORT"), None);
    }

    #[test]
    fn config_bodies_read_either_field_name() {
        let get: Config = serde_json::from_str(r#"{"compatibility":"FULL"}"#).expect("alias");
        assert_eq!(get.compatibility_level, Compatibility::Full);
        let put: ConfigUpdate = serde_json::from_str(r#"{"compatibilityLevel":"NONE"}"#).expect("alias");
        assert_eq!(put.compatibility, Compatibility::None);
        let raw: ConfigUpdate<String> = serde_json::from_str(r#"{"compatibility":"sideways"}"#).expect("raw");
        assert_eq!(raw.compatibility, "sideways");
    }
}

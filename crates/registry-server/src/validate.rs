//! The rules of Java Avro's `Schema.Parser`, the parser behind Confluent's registry, checked on a
//! schema's JSON before apache-avro parses it.
//!
//! apache-avro is more lenient than Java Avro: it reads a field's object as a schema of its own,
//! so `{"name": "key", "type": "array", "items": "string"}` passes as an array although Java
//! Avro, fastavro and Python's `avro` all reject it; it also accepts a type defined twice, a
//! schema named `boolean`, an `int` default out of range, an unknown `order` or `{"type":
//! {"type": "string"}}`, and panics on an invalid record name or alias. A registry that stored
//! such a schema would hand Java and Python readers a schema they cannot parse. So every new
//! schema passes here first, and the first problem found is the answer.
//!
//! Where Avro 1.11 and 1.12 disagree (a union default matching a branch other than the first, a
//! named type used before its definition, a namespace part that is not a name) this follows the
//! one apache-avro agrees with, so the two checks never contradict each other. A full name defined
//! twice is refused as 1.11 refuses it: 1.12 lets some such schemas through, apache-avro all, and
//! which definition a reader then uses is anyone's guess.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];
/// Type names that only mean something in an object (`{"type": "array", "items": ...}`).
const COMPLEX: [&str; 6] = ["record", "error", "enum", "array", "map", "fixed"];
/// Deeper defaults than this are refused rather than followed: a record whose field defaults to
/// an empty object of its own type would otherwise be checked forever.
const MAX_DEFAULT_DEPTH: usize = 64;

/// What is wrong with a schema.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// A complex type named where a type is expected, its attributes beside it instead of in an
    /// object: `{"name": "key", "type": "array", "items": "string"}`.
    #[error(
        "\"{0}\" is not a defined name: the {0} type is written as an object, {{\"type\": \"{0}\", ...}}, \
         with its attributes inside it (a field's \"type\" holds that object)"
    )]
    ComplexTypeByName(String),
    /// A name that is neither a primitive nor a type defined before (or in a reference).
    #[error("\"{0}\" is not a defined name: named types must be defined before they are used, or come from a reference")]
    UndefinedName(String),
    /// An object whose `type` is not a type name at all.
    #[error("unknown type \"{0}\"")]
    UnknownType(String),
    /// A name, namespace, alias, field name or enum symbol that Avro's naming rule refuses.
    #[error("{kind} \"{name}\" is invalid: {reason}")]
    InvalidName {
        /// What the name names, e.g. "field name".
        kind: &'static str,
        /// The name as written.
        name: String,
        /// Which part of the rule it breaks.
        reason: &'static str,
    },
    /// A schema named after a primitive type.
    #[error("\"{0}\" is a primitive type and cannot name a schema")]
    PrimitiveName(String),
    /// A full name defined twice (in the schema, or in it and a reference).
    #[error("\"{0}\" is defined twice")]
    Redefined(String),
    /// Two fields of one record with the same name.
    #[error("field \"{0}\" is defined twice")]
    DuplicateField(String),
    /// Two enum symbols alike.
    #[error("enum symbol \"{0}\" is listed twice")]
    DuplicateSymbol(String),
    /// An enum default that is not one of its symbols.
    #[error("enum default \"{0}\" is not one of the symbols")]
    EnumDefaultNotASymbol(String),
    /// A union directly inside a union.
    #[error("a union cannot contain a union directly")]
    NestedUnion,
    /// Two branches of one union of the same type (or the same full name).
    #[error("the union has more than one branch of type {0}")]
    DuplicateInUnion(String),
    /// A field default that is not a value of the field's type.
    #[error("default {default} is not a value of the field's type {expected}")]
    InvalidDefault {
        /// The default, as JSON.
        default: String,
        /// The field's type, as JSON.
        expected: String,
    },
    /// A structural rule, said in full (a record without `fields`, a fixed without `size`...).
    #[error("{0}")]
    Malformed(&'static str),
}

fanout_core::debug_as_report!(Problem);

/// A schema Java Avro would refuse: the problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSchema {
    /// From the outside in, e.g. `record "x.R"`, `field "key"`; empty at the top.
    pub location: Vec<String>,
    /// What is wrong there.
    pub problem: Problem,
}

impl std::fmt::Display for InvalidSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.location.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{}: {}", self.location.join(", "), self.problem)
        }
    }
}

impl std::error::Error for InvalidSchema {}

/// Checks `schema` against Java Avro's parsing rules. `referenced` are the schemas its
/// references lead to; only the named types they define are taken from them.
pub fn validate(schema: &Value, referenced: &[Value]) -> Result<(), InvalidSchema> {
    let mut validator = Validator::default();
    for value in referenced {
        validator.collect(value, "");
    }
    validator.schema(schema, "")
}

#[derive(Default)]
struct Validator<'a> {
    /// Every named type defined so far, by full name: references resolve against it and defaults
    /// are checked against the definition.
    defined: HashMap<String, &'a Value>,
    location: Vec<String>,
}

impl<'a> Validator<'a> {
    fn fail(&self, problem: Problem) -> InvalidSchema {
        InvalidSchema { location: self.location.clone(), problem }
    }

    /// The full name `name` refers to from namespace `space`, or `None` when it names no
    /// primitive and no defined type. Like Java, an unqualified name not found in the enclosing
    /// namespace is looked up in the null namespace.
    fn resolve(&self, name: &str, space: &str) -> Option<String> {
        if PRIMITIVES.contains(&name) {
            return Some(name.to_owned());
        }
        let qualified = qualify(name, space);
        if self.defined.contains_key(&qualified) {
            return Some(qualified);
        }
        (!name.contains('.') && self.defined.contains_key(name)).then(|| name.to_owned())
    }

    fn undefined(&self, name: &str) -> InvalidSchema {
        if COMPLEX.contains(&name) {
            self.fail(Problem::ComplexTypeByName(name.to_owned()))
        } else {
            self.fail(Problem::UndefinedName(name.to_owned()))
        }
    }

    fn schema(&mut self, schema: &'a Value, space: &str) -> Result<(), InvalidSchema> {
        match schema {
            Value::String(name) => match self.resolve(name, space) {
                Some(_) => Ok(()),
                None => Err(self.undefined(name)),
            },
            Value::Array(branches) => self.union(branches, space),
            Value::Object(object) => self.object(schema, object, space),
            _ => Err(self
                .fail(Problem::Malformed("a schema must be a type name, an object or a union (an array)"))),
        }
    }

    fn object(
        &mut self,
        schema: &'a Value,
        object: &'a Map<String, Value>,
        space: &str,
    ) -> Result<(), InvalidSchema> {
        let kind = match object.get("type") {
            Some(Value::String(kind)) => kind.as_str(),
            Some(_) => {
                return Err(self.fail(Problem::Malformed(
                    "\"type\" of a type object must be a type name; a nested type belongs in a field's \"type\", \
                     in \"items\" or in \"values\"",
                )))
            }
            None => return Err(self.fail(Problem::Malformed("a type object needs a \"type\""))),
        };
        match kind {
            "record" | "error" | "enum" | "fixed" => {
                let (full, child_space) = self.define(schema, object, space)?;
                self.location.push(format!("{kind} \"{full}\""));
                match kind {
                    "enum" => self.symbols(object)?,
                    "fixed" => self.size(object)?,
                    _ => self.fields(object, &child_space)?,
                }
                self.location.pop();
                Ok(())
            }
            "array" => self.nested(object, "items", "an array needs \"items\"", space),
            "map" => self.nested(object, "values", "a map needs \"values\"", space),
            _ if self.resolve(kind, space).is_some() => Ok(()),
            _ => Err(self.fail(Problem::UnknownType(kind.to_owned()))),
        }
    }

    fn nested(
        &mut self,
        object: &'a Map<String, Value>,
        attribute: &'static str,
        missing: &'static str,
        space: &str,
    ) -> Result<(), InvalidSchema> {
        let inner = object.get(attribute).ok_or_else(|| self.fail(Problem::Malformed(missing)))?;
        self.location.push(attribute.to_owned());
        self.schema(inner, space)?;
        self.location.pop();
        Ok(())
    }

    fn union(&mut self, branches: &'a [Value], space: &str) -> Result<(), InvalidSchema> {
        let mut kinds = HashSet::new();
        for (index, branch) in branches.iter().enumerate() {
            self.location.push(format!("union branch {}", index + 1));
            if branch.is_array() {
                return Err(self.fail(Problem::NestedUnion));
            }
            self.schema(branch, space)?;
            if let Some(kind) = self.union_kind(branch, space) {
                if !kinds.insert(kind.clone()) {
                    return Err(self.fail(Problem::DuplicateInUnion(kind)));
                }
            }
            self.location.pop();
        }
        Ok(())
    }

    /// What makes two union branches the same: the type for unnamed types, the full name for
    /// named ones. Called on a branch that validated.
    fn union_kind(&self, branch: &Value, space: &str) -> Option<String> {
        match branch {
            Value::String(name) => self.resolve(name, space),
            Value::Object(object) => match object.get("type").and_then(Value::as_str)? {
                "record" | "error" | "enum" | "fixed" => Some(full_name(object, space)?.0),
                kind @ ("array" | "map") => Some(kind.to_owned()),
                kind => self.resolve(kind, space),
            },
            _ => None,
        }
    }

    /// Checks a named type's name, namespace and aliases and defines it; answers its full name
    /// and the namespace its children inherit.
    fn define(
        &mut self,
        schema: &'a Value,
        object: &'a Map<String, Value>,
        space: &str,
    ) -> Result<(String, String), InvalidSchema> {
        let (full, child_space) = full_name(object, space)
            .ok_or_else(|| self.fail(Problem::Malformed("a named type needs \"name\" as a string")))?;
        if let Some(Value::String(namespace)) = object.get("namespace") {
            self.check_dotted("namespace", namespace, true)?;
        }
        self.check_dotted("name", &full, false)?;
        if PRIMITIVES.contains(&full.as_str()) {
            return Err(self.fail(Problem::PrimitiveName(full)));
        }
        // Java checks only an alias's last part; apache-avro unwraps the parse of the whole, so
        // an alias Avro's naming rule refuses would panic it.
        for alias in self.strings(object, "aliases")? {
            self.check_dotted("alias", alias, false)?;
        }
        if self.defined.insert(full.clone(), schema).is_some() {
            return Err(self.fail(Problem::Redefined(full)));
        }
        Ok((full, child_space))
    }

    fn fields(&mut self, object: &'a Map<String, Value>, space: &str) -> Result<(), InvalidSchema> {
        let mut names = HashSet::new();
        for field in self.array(object, "fields", "a record needs \"fields\", an array")? {
            self.field(field, space, &mut names)?;
        }
        Ok(())
    }

    fn field(
        &mut self,
        field: &'a Value,
        space: &str,
        names: &mut HashSet<&'a str>,
    ) -> Result<(), InvalidSchema> {
        let field = field.as_object().ok_or_else(|| {
            self.fail(Problem::Malformed("a field must be an object with \"name\" and \"type\""))
        })?;
        let name = field
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| self.fail(Problem::Malformed("a field needs \"name\" as a string")))?;
        self.check_name("field name", name)?;
        if !names.insert(name) {
            return Err(self.fail(Problem::DuplicateField(name.to_owned())));
        }
        self.location.push(format!("field \"{name}\""));
        let field_type =
            field.get("type").ok_or_else(|| self.fail(Problem::Malformed("a field needs \"type\"")))?;
        self.schema(field_type, space)?;
        self.strings(field, "aliases")?;
        if let Some(order) = field.get("order") {
            let known = order.as_str().is_some_and(|o| {
                ["ascending", "descending", "ignore"].iter().any(|k| k.eq_ignore_ascii_case(o))
            });
            if !known {
                return Err(self.fail(Problem::Malformed(
                    "\"order\" must be \"ascending\", \"descending\" or \"ignore\"",
                )));
            }
        }
        if let Some(default) = field.get("default") {
            if !self.default_fits(field_type, space, default, 0) {
                return Err(self.fail(Problem::InvalidDefault {
                    default: default.to_string(),
                    expected: field_type.to_string(),
                }));
            }
        }
        self.location.pop();
        Ok(())
    }

    fn symbols(&self, object: &'a Map<String, Value>) -> Result<(), InvalidSchema> {
        let mut seen = HashSet::new();
        for symbol in self.array(object, "symbols", "an enum needs \"symbols\", an array of names")? {
            let symbol = symbol
                .as_str()
                .ok_or_else(|| self.fail(Problem::Malformed("enum symbols must be strings")))?;
            self.check_name("enum symbol", symbol)?;
            if !seen.insert(symbol) {
                return Err(self.fail(Problem::DuplicateSymbol(symbol.to_owned())));
            }
        }
        // Java ignores a default that is not a string; apache-avro refuses it with its own words.
        if let Some(Value::String(default)) = object.get("default") {
            if !seen.contains(default.as_str()) {
                return Err(self.fail(Problem::EnumDefaultNotASymbol(default.clone())));
            }
        }
        Ok(())
    }

    fn size(&self, object: &Map<String, Value>) -> Result<(), InvalidSchema> {
        let size = object.get("size").and_then(Value::as_u64);
        if size.is_none_or(|size| size > i32::MAX as u64) {
            return Err(
                self.fail(Problem::Malformed("a fixed needs \"size\", a whole number from 0 to 2^31-1"))
            );
        }
        Ok(())
    }

    /// Whether `default` is a value of `schema`, as Java Avro's `isValidDefault` decides, except
    /// that a union default may match any branch (Avro 1.12 and apache-avro; 1.11 wanted the
    /// first).
    fn default_fits(&self, schema: &Value, space: &str, default: &Value, depth: usize) -> bool {
        if depth > MAX_DEFAULT_DEPTH {
            return false;
        }
        match schema {
            Value::String(name) => self.named_default_fits(name, space, default, depth),
            Value::Array(branches) => {
                branches.iter().any(|b| self.default_fits(b, space, default, depth + 1))
            }
            Value::Object(object) => match object.get("type").and_then(Value::as_str) {
                Some("record" | "error") => {
                    let (Some(values), Some(fields), Some((_, child_space))) = (
                        default.as_object(),
                        object.get("fields").and_then(Value::as_array),
                        full_name(object, space),
                    ) else {
                        return false;
                    };
                    fields.iter().all(|field| {
                        let name = field.get("name").and_then(Value::as_str).unwrap_or_default();
                        // A field the default leaves out takes its own default, as in Java.
                        let value = values.get(name).or_else(|| field.get("default"));
                        match (field.get("type"), value) {
                            (Some(field_type), Some(value)) => {
                                self.default_fits(field_type, &child_space, value, depth + 1)
                            }
                            _ => false,
                        }
                    })
                }
                Some("enum" | "fixed") => default.is_string(),
                Some("array") => match (object.get("items"), default.as_array()) {
                    (Some(items), Some(elements)) => {
                        elements.iter().all(|e| self.default_fits(items, space, e, depth + 1))
                    }
                    _ => false,
                },
                Some("map") => match (object.get("values"), default.as_object()) {
                    (Some(values), Some(entries)) => {
                        entries.values().all(|v| self.default_fits(values, space, v, depth + 1))
                    }
                    _ => false,
                },
                Some(name) => self.named_default_fits(name, space, default, depth),
                None => false,
            },
            _ => false,
        }
    }

    fn named_default_fits(&self, name: &str, space: &str, default: &Value, depth: usize) -> bool {
        match name {
            "null" => default.is_null(),
            "boolean" => default.is_boolean(),
            "int" => default.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            "long" => default.as_i64().is_some(),
            "float" | "double" => default.is_number() || default.as_str().is_some_and(is_java_double),
            "bytes" | "string" => default.is_string(),
            _ => match self.resolve(name, space).and_then(|full| self.defined.get(&full).map(|d| (full, *d)))
            {
                Some((full, definition)) => {
                    let (space, _) = split_full_name(&full);
                    self.default_fits(definition, space, default, depth + 1)
                }
                None => false,
            },
        }
    }

    /// Defines the named types in a referenced schema, without judging it: it was accepted when
    /// it was registered.
    fn collect(&mut self, schema: &'a Value, space: &str) {
        match schema {
            Value::Array(branches) => branches.iter().for_each(|b| self.collect(b, space)),
            Value::Object(object) => match object.get("type") {
                Some(Value::String(kind)) => match kind.as_str() {
                    "record" | "error" | "enum" | "fixed" => {
                        let Some((full, child_space)) = full_name(object, space) else { return };
                        self.defined.entry(full).or_insert(schema);
                        let fields = object.get("fields").and_then(Value::as_array).into_iter().flatten();
                        for field_type in fields.filter_map(|f| f.get("type")) {
                            self.collect(field_type, &child_space);
                        }
                    }
                    "array" => object.get("items").into_iter().for_each(|i| self.collect(i, space)),
                    "map" => object.get("values").into_iter().for_each(|v| self.collect(v, space)),
                    _ => {}
                },
                Some(nested) => self.collect(nested, space),
                None => {}
            },
            _ => {}
        }
    }

    /// The array at `attribute`, which must be there.
    fn array(
        &self,
        object: &'a Map<String, Value>,
        attribute: &str,
        missing: &'static str,
    ) -> Result<&'a [Value], InvalidSchema> {
        object
            .get(attribute)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .ok_or_else(|| self.fail(Problem::Malformed(missing)))
    }

    /// The strings at `attribute` (`aliases`), none when it is absent.
    fn strings(
        &self,
        object: &'a Map<String, Value>,
        attribute: &'static str,
    ) -> Result<Vec<&'a str>, InvalidSchema> {
        let Some(value) = object.get(attribute) else { return Ok(Vec::new()) };
        value
            .as_array()
            .and_then(|items| items.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
            .ok_or_else(|| self.fail(Problem::Malformed("\"aliases\" must be an array of strings")))
    }

    /// Avro's naming rule: `[A-Za-z_][A-Za-z0-9_]*`.
    fn check_name(&self, kind: &'static str, name: &str) -> Result<(), InvalidSchema> {
        let reason = match name.chars().next() {
            None => Some("it is empty"),
            Some(first) if !(first.is_ascii_alphabetic() || first == '_') => {
                Some("it must start with a letter or _")
            }
            Some(_) if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                Some("it may contain only letters, digits and _")
            }
            Some(_) => None,
        };
        match reason {
            Some(reason) => Err(self.fail(Problem::InvalidName { kind, name: name.to_owned(), reason })),
            None => Ok(()),
        }
    }

    /// A dotted name: every part follows the naming rule. `may_be_empty` for a namespace, where
    /// `""` means the null namespace.
    fn check_dotted(&self, kind: &'static str, name: &str, may_be_empty: bool) -> Result<(), InvalidSchema> {
        if name.is_empty() && may_be_empty {
            return Ok(());
        }
        for part in name.split('.') {
            if let Err(mut error) = self.check_name(kind, part) {
                if let Problem::InvalidName { name: reported, .. } = &mut error.problem {
                    name.clone_into(reported);
                }
                return Err(error);
            }
        }
        Ok(())
    }
}

/// A named type's full name and the namespace its children inherit: a dotted `name` carries its
/// namespace; otherwise `namespace` (`""` for none) or, without it, the enclosing one.
fn full_name(object: &Map<String, Value>, space: &str) -> Option<(String, String)> {
    let name = object.get("name")?.as_str()?;
    let full = if name.contains('.') {
        name.to_owned()
    } else {
        match object.get("namespace") {
            Some(Value::String(namespace)) => qualify(name, namespace),
            // Java ignores a namespace that is not a string.
            _ => qualify(name, space),
        }
    };
    let child_space = split_full_name(&full).0.to_owned();
    Some((full, child_space))
}

/// (namespace, name) of a full name; the namespace is `""` for none.
fn split_full_name(full: &str) -> (&str, &str) {
    full.rsplit_once('.').unwrap_or(("", full))
}

/// `name` qualified with `space` unless it is qualified already.
fn qualify(name: &str, space: &str) -> String {
    if name.contains('.') || space.is_empty() {
        name.to_owned()
    } else {
        format!("{space}.{name}")
    }
}

/// What Java's `Double.valueOf` reads, which is how Java Avro takes a float or double default
/// written as a string: decimal numbers, `NaN` and `Infinity` (Rust's parser also takes `inf`
/// and `nan` in any case, which Java refuses).
fn is_java_double(text: &str) -> bool {
    let text = text.trim();
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    match unsigned {
        "NaN" | "Infinity" => true,
        _ => {
            unsigned.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
                && text.parse::<f64>().is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(schema: Value) -> Result<(), InvalidSchema> {
        validate(&schema, &[])
    }

    fn problem(schema: Value) -> Problem {
        match check(schema.clone()) {
            Err(error) => error.problem,
            Ok(()) => panic!("accepted, but Java Avro refuses it: {schema}"),
        }
    }

    fn record(fields: Value) -> Value {
        json!({"type": "record", "name": "R", "namespace": "x", "fields": fields})
    }

    #[test]
    fn complex_type_names_as_a_field_type_with_sibling_attributes_are_refused() {
        let shapes = [
            json!({"name": "key", "type": "array", "items": "string"}),
            json!({"name": "key", "type": "map", "values": "string"}),
            json!({"name": "key", "type": "enum", "symbols": ["A"]}),
            json!({"name": "key", "type": "fixed", "size": 4}),
            json!({"name": "key", "type": "record", "fields": []}),
        ];
        for field in shapes {
            let kind = field["type"].as_str().unwrap_or_default().to_owned();
            let error = check(record(json!([field]))).expect_err("refused");
            assert_eq!(error.problem, Problem::ComplexTypeByName(kind.clone()));
            assert_eq!(error.location, ["record \"x.R\"", "field \"key\""]);
            assert!(error.to_string().contains(&format!("{{\"type\": \"{kind}\", ...}}")), "{error}");
        }
        // The same attributes inside an object are the right way to write it.
        check(record(json!([{"name": "key", "type": {"type": "array", "items": "string"}}]))).expect("valid");
    }

    #[test]
    fn names_must_be_defined_before_use_or_come_from_a_reference() {
        let unknown = record(json!([{"name": "a", "type": ["null", "Missing"]}]));
        assert_eq!(problem(unknown), Problem::UndefinedName("Missing".into()));
        let forward = record(json!([
            {"name": "a", "type": "S"},
            {"name": "b", "type": {"type": "record", "name": "S", "fields": []}}
        ]));
        assert_eq!(problem(forward), Problem::UndefinedName("S".into()));
        assert_eq!(problem(json!({"type": "foo"})), Problem::UnknownType("foo".into()));

        let address = json!({"type": "record", "name": "Address", "namespace": "x", "fields": []});
        let person = record(json!([{"name": "home", "type": "Address"}]));
        validate(&person, std::slice::from_ref(&address)).expect("resolves in the enclosing namespace");
        let redefining = record(json!([{"name": "home", "type": address.clone()}]));
        let error = validate(&redefining, &[address]).expect_err("a referenced name cannot be redefined");
        assert_eq!(error.problem, Problem::Redefined("x.Address".into()));
    }

    #[test]
    fn names_namespaces_aliases_fields_and_symbols_follow_avros_naming_rule() {
        let invalid = [
            json!({"type": "record", "name": "1R", "fields": []}),
            json!({"type": "record", "name": "R-x", "fields": []}),
            json!({"type": "record", "name": "R", "namespace": "a..b", "fields": []}),
            json!({"type": "record", "name": "R", "aliases": ["1x"], "fields": []}),
            record(json!([{"name": "1a", "type": "int"}])),
            record(json!([{"name": "", "type": "int"}])),
            json!({"type": "enum", "name": "E", "symbols": ["A-B"]}),
        ];
        for schema in invalid {
            assert!(matches!(problem(schema.clone()), Problem::InvalidName { .. }), "{schema}");
        }
        let kinds = record(json!([{"name": "ok", "type": "int", "aliases": ["1x"]}]));
        check(kinds).expect("Java does not judge field aliases as names");
    }

    #[test]
    fn primitive_names_redefinitions_and_duplicates_are_refused() {
        let boolean = json!({"type": "record", "name": "boolean", "fields": []});
        assert_eq!(problem(boolean), Problem::PrimitiveName("boolean".into()));
        check(json!({"type": "record", "name": "boolean", "namespace": "x", "fields": []}))
            .expect("x.boolean is not a primitive");
        let twice = json!([
            {"type": "record", "name": "A", "fields": []},
            {"type": "record", "name": "A", "fields": []}
        ]);
        assert_eq!(problem(twice), Problem::Redefined("A".into()));
        let fields = record(json!([{"name": "a", "type": "int"}, {"name": "a", "type": "string"}]));
        assert_eq!(problem(fields), Problem::DuplicateField("a".into()));
        let symbols = json!({"type": "enum", "name": "E", "symbols": ["A", "A"]});
        assert_eq!(problem(symbols), Problem::DuplicateSymbol("A".into()));
        let default = json!({"type": "enum", "name": "E", "symbols": ["A"], "default": "B"});
        assert_eq!(problem(default), Problem::EnumDefaultNotASymbol("B".into()));
    }

    #[test]
    fn structural_attributes_are_required_with_their_shape() {
        for schema in [
            json!({"type": "fixed", "name": "F"}),
            json!({"type": "fixed", "name": "F", "size": "4"}),
            json!({"type": "fixed", "name": "F", "size": -1}),
            json!({"type": "fixed", "name": "F", "size": 3_000_000_000_u64}),
            json!({"type": "enum", "name": "E"}),
            json!({"type": "array"}),
            json!({"type": "map"}),
            json!({"type": "record", "name": "R"}),
            json!({"type": "record", "fields": []}),
            json!({"type": {"type": "string"}}),
            record(json!([{"name": "a"}])),
            record(json!([{"name": "a", "type": "int", "order": "sideways"}])),
            record(json!([{"name": "a", "type": "int", "aliases": "b"}])),
            json!(5),
        ] {
            assert!(matches!(problem(schema.clone()), Problem::Malformed(_)), "{schema}");
        }
        check(json!({"type": "fixed", "name": "F", "size": 0})).expect("an empty fixed is allowed");
    }

    #[test]
    fn unions_hold_no_union_and_no_two_branches_of_one_type() {
        assert_eq!(problem(json!(["null", ["int"]])), Problem::NestedUnion);
        assert_eq!(problem(json!(["int", "int"])), Problem::DuplicateInUnion("int".into()));
        let arrays = json!([{"type": "array", "items": "int"}, {"type": "array", "items": "string"}]);
        assert_eq!(problem(arrays), Problem::DuplicateInUnion("array".into()));
        check(json!(["null", {"type": "record", "name": "A", "fields": []}, "string"])).expect("valid");
    }

    #[test]
    fn defaults_must_be_values_of_the_field_type() {
        let fits = |field_type: Value, default: Value| {
            check(record(json!([{"name": "f", "type": field_type, "default": default}])))
        };
        let invalid = [
            (json!("int"), json!("x")),
            (json!("int"), json!(1.5)),
            (json!("int"), json!(3_000_000_000_u64)),
            (json!("long"), json!(1.0)),
            (json!("long"), json!(9_223_372_036_854_775_808_u64)),
            (json!("double"), json!("x")),
            (json!("float"), json!("inf")),
            (json!("string"), json!(null)),
            (json!("boolean"), json!("true")),
            (json!("bytes"), json!(1)),
            (json!("null"), json!(0)),
            (json!(["null", "string"]), json!(5)),
            (json!({"type": "array", "items": "int"}), json!([1, "x"])),
            (json!({"type": "map", "values": "int"}), json!({"k": "x"})),
            (json!({"type": "record", "name": "S", "fields": [{"name": "b", "type": "int"}]}), json!({})),
            (json!({"type": "int", "logicalType": "date"}), json!("x")),
        ];
        for (field_type, default) in invalid {
            let error = fits(field_type.clone(), default.clone()).expect_err("refused");
            assert!(
                matches!(error.problem, Problem::InvalidDefault { .. }),
                "{field_type} {default}: {error}"
            );
        }
        let valid = [
            (json!("long"), json!(-9_223_372_036_854_775_808_i64)),
            (json!("float"), json!("NaN")),
            (json!("double"), json!("-Infinity")),
            (json!("double"), json!(1)),
            (json!(["null", "string"]), json!(null)),
            (json!(["null", "string"]), json!("x")),
            (
                json!({"type": "record", "name": "S", "fields": [{"name": "b", "type": "int", "default": 2}]}),
                json!({}),
            ),
            (json!({"type": "enum", "name": "E", "symbols": ["A"]}), json!("A")),
            (json!({"type": "map", "values": "R"}), json!({})),
        ];
        for (field_type, default) in valid {
            fits(field_type.clone(), default.clone())
                .unwrap_or_else(|e| panic!("{field_type} {default}: {e}"));
        }
    }

    #[test]
    fn recursion_namespaces_and_logical_types_are_accepted() {
        let linked = record(json!([{"name": "next", "type": ["null", "R"], "default": null}]));
        check(linked).expect("a record may refer to itself");
        let nested = json!({"type": "record", "name": "R", "namespace": "n", "fields": [
            {"name": "a", "type": {"type": "record", "name": "m.S", "fields": [
                {"name": "c", "type": {"type": "enum", "name": "E", "symbols": ["A"]}}]}},
            {"name": "b", "type": "m.E"},
            {"name": "c", "type": {"type": "string", "logicalType": "uuid"}}
        ]});
        check(nested).expect("E takes the namespace of the record it is defined in");
    }
}

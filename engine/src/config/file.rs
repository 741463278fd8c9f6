//! The raw layer: the configuration file's tables as serde structs, every value kept with its
//! span, nothing checked yet.
//!
//! Owns the file's *shape*: which tables exist and which keys each accepts (serde's
//! `deny_unknown_fields` on every struct), and the reading loop in [`read`]. It does not judge
//! values: every leaf is a [`Value`] of whatever TOML type was written, so that a wrong type is
//! reported by the validator with the key, line and value, next to every other mistake, instead
//! of stopping serde at the first one.
//!
//! Reading never stops at the first mistake either. serde reports one error and gives up; the
//! loop in [`read`] records that error with its line, removes the offending key from the parsed
//! document and deserializes again, until the document fits. Unknown keys and tables of the
//! wrong shape are therefore all reported in one run.

use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::Report;

/// A key that holds a plain value: absent, or present with its span.
pub(super) type Field = Option<Spanned<Value>>;

/// A `[[name]]` array of tables, with the span of each table's header.
pub(super) type Tables<T> = Option<Spanned<Vec<Spanned<T>>>>;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a TOML document")]
pub(super) struct RawFile {
    /// Taken out by the profile merge (`profile.rs`) before the document gets here; named so
    /// that a misspelt `profile` gets a suggestion.
    #[allow(dead_code)]
    pub profile: Field,
    pub runtime: Option<Spanned<RawRuntime>>,
    pub limits: Option<Spanned<RawLimits>>,
    pub timeouts: Option<Spanned<RawTimeouts>>,
    pub listener: Tables<RawListener>,
    pub upstream: Tables<RawUpstream>,
    pub route: Tables<RawRoute>,
    pub admin: Option<Spanned<RawAdmin>>,
    pub access_log: Option<Spanned<RawAccessLog>>,
    pub forwarding: Option<Spanned<RawForwarding>>,
    pub auth: Tables<RawAuth>,
}

/// `[runtime]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [runtime]")]
pub(super) struct RawRuntime {
    pub cores: Field,
    pub exclude: Field,
    pub io: Field,
    pub ring_entries: Field,
    pub buffer_size: Field,
    pub buffers_per_shard: Field,
    pub max_connections: Field,
    pub idle_wait: Field,
    pub glommio: Option<Spanned<RawGlommio>>,
}

/// `[runtime.glommio]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [runtime.glommio]")]
pub(super) struct RawGlommio {
    pub io_memory: Field,
    pub ring_depth: Field,
    pub spin_before_park: Field,
    pub preempt_timer: Field,
}

/// `[limits]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [limits]")]
pub(super) struct RawLimits {
    pub max_request_line: Field,
    pub max_head_bytes: Field,
    pub max_headers: Field,
    pub max_body_bytes: Field,
    pub request_buffering: Field,
}

/// `[timeouts]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [timeouts]")]
pub(super) struct RawTimeouts {
    pub header: Field,
    pub keepalive: Field,
    pub body: Field,
    pub send: Field,
    pub upstream_connect: Field,
    pub upstream_response: Field,
    pub upstream_body: Field,
    pub tunnel_idle: Field,
    pub drain: Field,
}

/// `[admin]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [admin]")]
pub(super) struct RawAdmin {
    pub bind: Field,
    pub token: Field,
}

/// `[forwarding]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [forwarding]")]
pub(super) struct RawForwarding {
    pub trusted_proxies: Field,
    pub drop_from_untrusted: Field,
    pub forwarded_header: Field,
}

/// `[access_log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [access_log]")]
pub(super) struct RawAccessLog {
    pub path: Field,
    pub format: Field,
    pub buffer_size: Field,
    pub flush_interval: Field,
}

/// One `[[listener]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [[listener]]")]
pub(super) struct RawListener {
    pub name: Field,
    pub bind: Field,
    pub backlog: Field,
    pub defer_accept: Field,
    pub tls: Option<Spanned<RawListenerTls>>,
}

/// A listener's `tls = { certificates = [...], unknown_name, min_version }`
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table like { certificates = [{ cert = \"chain.pem\", key = \"key.pem\" }] }"
)]
pub(super) struct RawListenerTls {
    pub certificates: Tables<RawCertificate>,
    pub unknown_name: Field,
    pub min_version: Field,
    pub client_ca: Field,
    pub client_auth: Field,
    pub client_cert_header: Field,
}

/// One of a listener's `certificates = [{ cert, key }]`
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an inline table like { cert = \"chain.pem\", key = \"key.pem\" }"
)]
pub(super) struct RawCertificate {
    pub cert: Field,
    pub key: Field,
}

/// One `[[upstream]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [[upstream]]")]
pub(super) struct RawUpstream {
    pub name: Field,
    pub endpoints: Field,
    pub balance: Field,
    pub max_idle_per_endpoint: Field,
    pub idle_timeout: Field,
    pub max_requests_per_connection: Field,
    pub connect_timeout: Field,
    pub response_timeout: Field,
    pub hash_on: Field,
    pub hash_balance_factor: Field,
    pub resolve_every: Field,
    pub panic_threshold: Field,
    pub slow_start: Field,
    pub outlier: Option<Spanned<RawOutlier>>,
    pub health_check: Option<Spanned<RawHealthCheck>>,
    pub limits: Option<Spanned<RawUpstreamLimits>>,
    pub tls: Option<Spanned<RawUpstreamTls>>,
}

/// An upstream's `[upstream.outlier]`: passive detection.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table, written [upstream.outlier] after its [[upstream]]"
)]
pub(super) struct RawOutlier {
    pub consecutive_failures: Field,
    pub consecutive_5xx: Field,
    pub min_success_rate: Field,
    pub success_rate_requests: Field,
    pub base_ejection_time: Field,
    pub max_ejection_time: Field,
    pub max_ejection_percent: Field,
}

/// An upstream's `[upstream.health_check]`: active checks.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table, written [upstream.health_check] after its [[upstream]]"
)]
pub(super) struct RawHealthCheck {
    pub path: Field,
    pub host: Field,
    pub interval: Field,
    pub timeout: Field,
    pub rise: Field,
    pub fall: Field,
    pub expected_statuses: Field,
}

/// An upstream's `[upstream.limits]`: circuit breaking and the retry budget, per shard.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table, written [upstream.limits] after its [[upstream]]"
)]
pub(super) struct RawUpstreamLimits {
    pub max_connections: Field,
    pub max_pending: Field,
    pub max_requests: Field,
    pub max_retries: Field,
    pub retry_budget_percent: Field,
    pub retry_min_concurrency: Field,
}

/// An upstream's `tls = { sni, ca, verify, cert, key }`
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table like { sni = \"api.internal\", ca = \"ca.pem\" }"
)]
pub(super) struct RawUpstreamTls {
    pub sni: Field,
    pub ca: Field,
    pub verify: Field,
    pub cert: Field,
    pub key: Field,
}

/// One `[[route]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [[route]]")]
pub(super) struct RawRoute {
    pub name: Field,
    pub host: Field,
    pub methods: Field,
    pub path: Field,
    pub path_prefix: Field,
    pub upstream: Field,
    pub respond: Option<Spanned<RawRespond>>,
    pub strip_prefix: Field,
    pub prefix_rewrite: Field,
    pub add_request_headers: Field,
    pub add_response_headers: Field,
    pub remove_request_headers: Field,
    pub remove_response_headers: Field,
    pub max_body_bytes: Field,
    pub request_buffering: Field,
    pub auth: Field,
    pub rate_limit: Option<Spanned<RawRateLimit>>,
    pub retry: Option<Spanned<RawRetry>>,
    pub redirect_https: Field,
    pub https_port: Field,
}

/// A route's `retry = { on, retries, ... }`
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an inline table like { on = [\"connect_failure\", \"503\"], retries = 2 }"
)]
pub(super) struct RawRetry {
    pub on: Field,
    pub retries: Field,
    pub non_idempotent: Field,
    pub per_try_timeout: Field,
    pub deadline: Field,
    pub backoff: Field,
    pub max_backoff: Field,
}

/// A route's `rate_limit = { rate, burst, key, keys, ipv6_prefix }`
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an inline table like { rate = \"100/s\", burst = 50, key = \"client_ip\" }"
)]
pub(super) struct RawRateLimit {
    pub rate: Field,
    pub burst: Field,
    pub key: Field,
    pub keys: Field,
    pub ipv6_prefix: Field,
}

/// One `[[auth]]`: an API-key or JWT policy routes refer to by name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table, written [[auth]]")]
pub(super) struct RawAuth {
    pub name: Field,
    pub kind: Field,
    pub identity_header: Field,
    pub realm: Field,
    // kind = "api_key"
    pub keys: Field,
    pub key_file: Field,
    pub header: Field,
    pub bearer: Field,
    // kind = "jwt"
    pub secret: Field,
    pub public_key_file: Field,
    pub jwks_file: Field,
    pub issuer: Field,
    pub audience: Field,
    pub leeway: Field,
    pub require_exp: Field,
    pub identity_claim: Field,
    pub require: Field,
    pub forward_claims: Field,
    pub cache_entries: Field,
    pub cache_ttl: Field,
}

/// A route's `respond = { status, body, headers }`
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an inline table like { status = 200, body = \"ok\" }"
)]
pub(super) struct RawRespond {
    pub status: Field,
    pub body: Field,
    pub headers: Field,
}

/// A TOML value as written, of any type. Array items keep their spans so that a bad item is
/// reported on its own line; table keys do not need theirs (a mistake in a table entry is
/// reported at its value, which is on the same line).
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Value {
    String(String),
    /// Wide enough for every integer TOML can write, so range checks see the true value.
    Integer(i128),
    Float(f64),
    Boolean(bool),
    Datetime(String),
    Array(Vec<Spanned<Value>>),
    Table(Vec<(String, Spanned<Value>)>),
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// The key under which the toml crate hands a datetime to a visitor as a one-entry map.
const TOML_DATETIME_KEY: &str = "$__toml_private_datetime";

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Boolean(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Integer(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Integer(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Integer(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(Value::Integer(i128::try_from(v).unwrap_or(i128::MAX)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == TOML_DATETIME_KEY {
                return Ok(Value::Datetime(map.next_value()?));
            }
            entries.push((key, map.next_value::<Spanned<Value>>()?));
        }
        Ok(Value::Table(entries))
    }
}

/// What [`read`] got out of a file.
pub(super) struct Raw {
    pub file: RawFile,
    /// Keys (TOML paths) whose value serde could not take: tables or arrays of tables of the
    /// wrong shape, numbers out of range. They were reported and removed, so the validator must
    /// not also call them missing.
    pub rejected: Vec<String>,
}

/// The most mistakes [`read`] reports before giving up on a file; each costs one more
/// deserialization of the document.
const MAX_SHAPE_ERRORS: usize = 200;

/// Deserializes a parsed document (one file, or a file merged with its profiles; see
/// `profile.rs`) into the raw structs, reporting every unknown key and table of the wrong
/// shape. TOML syntax errors were reported when the document was parsed.
pub(super) fn read(mut document: Spanned<DeTable<'_>>, report: &mut Report<'_>) -> Option<Raw> {
    let mut rejected = Vec::new();
    for _ in 0..MAX_SHAPE_ERRORS {
        let error = match RawFile::deserialize(toml::Deserializer::from(document.clone())) {
            Ok(file) => return Some(Raw { file, rejected }),
            Err(error) => error,
        };
        let span = error.span().unwrap_or(0..0);
        let mut path = Vec::new();
        if !find_in_table(document.get_ref(), &span, &mut path) {
            // Not attributable to a key: report it as serde put it and stop.
            report.error(error.span(), "", one_line(error.message()));
            return None;
        }
        let key = toml_path(&path);
        match error.message().strip_prefix("unknown field `") {
            Some(rest) => {
                let (name, accepted) = rest.split_once('`').unwrap_or((rest, ""));
                report.error(Some(span), key, unknown_key_message(name, accepted));
            }
            None => {
                let message = shape_message(&path, error.message());
                report.invalid(span, key.clone(), message);
                rejected.push(key);
            }
        }
        if !remove(document.get_mut(), &path) {
            return None;
        }
    }
    report.error(None, "", "too many mistakes; fix these and check again");
    None
}

/// The message for a value serde could not take: a table or array of tables of the wrong type
/// (serde's "invalid type: X, expected Y"), or a number out of TOML's range.
fn shape_message(path: &[Step], serde_message: &str) -> String {
    let Some((_, expected)) = serde_message.split_once(", expected ") else {
        // Not a type mismatch: a value toml could not convert, like an integer beyond 128 bits.
        return one_line(serde_message);
    };
    match (path, expected) {
        ([Step::Key(section)], "a sequence") => {
            format!("must be written [[{section}]] (an array of tables)")
        }
        (_, "a sequence") => "expected an array of tables".into(),
        _ => format!("expected {expected}"),
    }
}

/// One step of a path into the document.
enum Step {
    Key(String),
    Index(usize),
}

/// Formats a path the way messages name keys: `route[2].respond.status`, arrays numbered from
/// 1, keys quoted when they are not bare TOML keys.
fn toml_path(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                push_key(&mut out, key);
            }
            Step::Index(i) => out.push_str(&format!("[{}]", i + 1)),
        }
    }
    out
}

/// Appends a key, quoted unless it is a bare TOML key (`A-Za-z0-9_-`).
pub(super) fn push_key(out: &mut String, key: &str) {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare {
        out.push_str(key);
    } else {
        out.push_str(&format!("{key:?}"));
    }
}

/// Finds the deepest key or value whose span holds `span`, recording the path to it. Searches
/// children before their container because the toml crate gives a `[table]` the span of its
/// header only, which does not hold its keys.
fn find(value: &DeValue<'_>, span: &Range<usize>, path: &mut Vec<Step>) -> bool {
    match value {
        DeValue::Table(table) => find_in_table(table, span, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Step::Index(i));
                if find(item.get_ref(), span, path) || holds(item.span(), span) {
                    return true;
                }
                path.pop();
            }
            false
        }
        _ => false,
    }
}

fn find_in_table(table: &DeTable<'_>, span: &Range<usize>, path: &mut Vec<Step>) -> bool {
    for (key, item) in table.iter() {
        path.push(Step::Key(key.get_ref().to_string()));
        if key.span() == *span || find(item.get_ref(), span, path) || holds(item.span(), span) {
            return true;
        }
        path.pop();
    }
    false
}

fn holds(outer: Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// Removes the key at the end of `path` (or, when the path ends inside an array, the key that
/// holds the array: removing one item would renumber the ones after it).
fn remove(root: &mut DeTable<'_>, path: &[Step]) -> bool {
    let Some(last_key) = path.iter().rposition(|step| matches!(step, Step::Key(_))) else {
        return false;
    };
    match &path[last_key] {
        Step::Key(key) => remove_at(root, &path[..last_key], key),
        Step::Index(_) => false,
    }
}

/// Walks `steps` down from `table` and removes `key` from the table found there. False when
/// there was nothing to remove.
fn remove_at(table: &mut DeTable<'_>, steps: &[Step], key: &str) -> bool {
    let Some((first, rest)) = steps.split_first() else {
        return table.remove(key).is_some();
    };
    let Step::Key(name) = first else {
        return false;
    };
    let Some(value) = table.get_mut(name.as_str()) else {
        return false;
    };
    let mut value = value.get_mut();
    let mut rest = rest;
    // Array indices lead into array items until the next table.
    while let Some((Step::Index(i), after)) = rest.split_first() {
        let DeValue::Array(items) = value else {
            return false;
        };
        let Some(item) = items.get_mut(*i) else {
            return false;
        };
        value = item.get_mut();
        rest = after;
    }
    match value {
        DeValue::Table(inner) => remove_at(inner, rest, key),
        _ => false,
    }
}

/// The message for an unknown key, with the closest accepted key as a suggestion. `accepted`
/// is the tail of serde's message: ", expected one of `a`, `b`" or ", expected `a`".
fn unknown_key_message(name: &str, accepted: &str) -> String {
    let keys: Vec<&str> = accepted.split('`').skip(1).step_by(2).collect();
    let mut message = String::from("unknown key");
    if let Some(best) = closest(name, &keys) {
        message.push_str(&format!("; did you mean `{best}`?"));
    }
    if !keys.is_empty() {
        message.push_str(&format!(" (accepted here: {})", keys.join(", ")));
    }
    message
}

/// The accepted key closest to a misspelt one, if any is close (edit distance at most a third
/// of the length, at least 1).
pub(super) fn closest<'k>(name: &str, keys: &[&'k str]) -> Option<&'k str> {
    let limit = (name.len() / 3).max(1);
    keys.iter()
        .map(|key| (edit_distance(name, key), *key))
        .filter(|&(distance, _)| distance <= limit)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, key)| key)
}

/// Levenshtein distance over bytes; keys are ASCII.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

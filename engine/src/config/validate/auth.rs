//! `[[auth]]` policies and a route's `auth` and `rate_limit`: raw values -> verifiers, key sets
//! and quotas, every mistake reported with its key and line like the rest of the file.
//!
//! The only part of validation that reads other files: API key files, PEM public keys and JWKS
//! documents, at paths relative to the configuration file's directory. They are read when the
//! configuration is loaded (so a reload picks up a rotated key set) and never again.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::super::defaults::*;
use super::super::file::{Field, RawAuth, RawRateLimit, Tables, Value};
use super::super::{AuthConfig, AuthMethod, RateLimitConfig};
use super::{Got, Names, Validator, key};
use crate::auth::jwt::{ClaimCheck, ClaimRule, ForwardClaim, JwtKey, KeySet};
use crate::auth::{
    ApiKeyAuth, ApiKeyEntry, ApiKeySettings, ApiKeys, JwtSettings, JwtVerifier, Realm,
    parse_key_file,
};
use crate::ratelimit::{KeySpec, MAX_KEYS_PER_SHARD, Quota, Rate};

/// Keys of `[[auth]]` that belong to one kind only, for "does not apply" errors.
const API_KEY_ONLY: [&str; 4] = ["keys", "key_file", "header", "bearer"];
const JWT_ONLY: [&str; 12] = [
    "secret",
    "public_key_file",
    "jwks_file",
    "issuer",
    "audience",
    "leeway",
    "require_exp",
    "identity_claim",
    "require",
    "forward_claims",
    "cache_entries",
    "cache_ttl",
];

fn raw_field<'r>(raw: &'r RawAuth, name: &str) -> &'r Field {
    match name {
        "keys" => &raw.keys,
        "key_file" => &raw.key_file,
        "header" => &raw.header,
        "bearer" => &raw.bearer,
        "secret" => &raw.secret,
        "public_key_file" => &raw.public_key_file,
        "jwks_file" => &raw.jwks_file,
        "issuer" => &raw.issuer,
        "audience" => &raw.audience,
        "leeway" => &raw.leeway,
        "require_exp" => &raw.require_exp,
        "identity_claim" => &raw.identity_claim,
        "require" => &raw.require,
        "forward_claims" => &raw.forward_claims,
        "cache_entries" => &raw.cache_entries,
        "cache_ttl" => &raw.cache_ttl,
        _ => &None,
    }
}

impl Validator<'_, '_> {
    /// Every `[[auth]]`, one entry each (`None` for those with mistakes, so routes can still
    /// find policies by name).
    pub(super) fn auth_policies(&mut self, raw: &Tables<RawAuth>) -> Vec<Option<AuthConfig>> {
        let items = raw.as_ref().map_or(&[][..], |t| t.get_ref().as_slice());
        let mut names = Names::new("auth");
        let mut policies = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let s = format!("auth[{}]", i + 1);
            let name = self.name(&item.get_ref().name, &s, &item.span(), &mut names);
            self.auth_names.push(name.as_deref().map(str::to_owned));
            let policy = self.auth_policy(item, &s);
            policies.push(match (name, policy) {
                (Some(name), Some((method, identity_header))) => Some(AuthConfig {
                    name,
                    method,
                    identity_header,
                }),
                _ => None,
            });
        }
        policies
    }

    fn auth_policy(
        &mut self,
        item: &Spanned<RawAuth>,
        s: &str,
    ) -> Option<(AuthMethod, Option<Box<str>>)> {
        let header = item.span();
        let raw = item.get_ref();
        let kind_key = key(s, "kind");
        let kind = self
            .string(&raw.kind, &kind_key)
            .and_then(|(text, span)| match text {
                "api_key" | "jwt" => Got::Value(text),
                _ => self.bad(span, &kind_key, "must be \"api_key\" or \"jwt\""),
            });
        let kind = self.required(kind, &header, &kind_key)?;
        let others = if kind == "jwt" {
            &API_KEY_ONLY[..]
        } else {
            &JWT_ONLY[..]
        };
        let mut misplaced = false;
        for name in others {
            if let Some(field) = raw_field(raw, name) {
                self.report.error(
                    Some(field.span()),
                    key(s, name),
                    format!("does not apply to kind = \"{kind}\""),
                );
                misplaced = true;
            }
        }
        let realm_key = key(s, "realm");
        let realm = self
            .string(&raw.realm, &realm_key)
            .and_then(|(text, span)| match Realm::new(text) {
                Ok(realm) => Got::Value(realm),
                Err(message) => self.bad(span, &realm_key, message),
            })
            .or(Realm::default());
        let identity_header =
            self.auth_header_name(&raw.identity_header, &key(s, "identity_header"));
        let method = if kind == "jwt" {
            self.jwt(item, s, realm?)
        } else {
            self.api_key(item, s, realm?)
        };
        if misplaced {
            return None;
        }
        Some((method?, identity_header?))
    }

    /// A header coregate writes upstream: an HTTP token, not one coregate manages itself.
    fn auth_header_name(&mut self, field: &Field, key: &str) -> Option<Option<Box<str>>> {
        self.string(field, key)
            .and_then(
                |(text, span)| match super::added_request_header_problem(text) {
                    Some(message) => self.bad(span, key, message),
                    None => Got::Value(Box::<str>::from(text.to_ascii_lowercase())),
                },
            )
            .optional()
    }

    fn api_key(&mut self, item: &Spanned<RawAuth>, s: &str, realm: Realm) -> Option<AuthMethod> {
        let raw = item.get_ref();
        let mut entries = Vec::new();
        let mut ok = true;
        let keys_key = key(s, "keys");
        match self.array(
            &raw.keys,
            &keys_key,
            "an array like [{ identity = \"acme\", key = \"...\" }]",
        ) {
            Got::Value(items) => {
                for (i, entry) in items.iter().enumerate() {
                    let entry_key = format!("{keys_key}[{}]", i + 1);
                    match self.key_entry(entry, &entry_key) {
                        Some(entry) => entries.push(entry),
                        None => ok = false,
                    }
                }
            }
            Got::Invalid => ok = false,
            Got::Absent => {}
        }
        let file_key = key(s, "key_file");
        match self.read_file(&raw.key_file, &file_key) {
            Got::Value((bytes, path, span)) => match parse_key_file(&bytes) {
                Ok(from_file) => entries.extend(from_file),
                Err(errors) => {
                    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    self.report.invalid(
                        span,
                        &file_key,
                        format!("{}: {}", path.display(), lines.join("; ")),
                    );
                    ok = false;
                }
            },
            Got::Invalid => ok = false,
            Got::Absent => {}
        }
        if raw.keys.is_none() && raw.key_file.is_none() {
            self.report.error(
                Some(item.span()),
                s,
                "kind = \"api_key\" needs `keys = [...]` or `key_file = \"...\"`",
            );
            return None;
        }
        let header_key = key(s, "header");
        let header = self
            .string(&raw.header, &header_key)
            .map(|(text, span)| (text.to_owned(), span))
            .optional();
        let bearer = self
            .boolean(&raw.bearer, &key(s, "bearer"))
            .or(crate::auth::apikey::DEFAULT_ACCEPT_BEARER);
        if !ok {
            return None;
        }
        let keys = match ApiKeys::new(entries) {
            Ok(keys) => keys,
            Err(err) => {
                let span = raw
                    .keys
                    .as_ref()
                    .or(raw.key_file.as_ref())
                    .map_or_else(|| item.span(), Spanned::span);
                self.report.invalid(span, &keys_key, err.to_string());
                return None;
            }
        };
        let (header, header_span) = match header? {
            Some((text, span)) => (text, Some(span)),
            None => (crate::auth::DEFAULT_API_KEY_HEADER.to_owned(), None),
        };
        let settings = ApiKeySettings {
            header,
            accept_bearer: bearer?,
            realm,
        };
        match ApiKeyAuth::new(keys, settings) {
            Ok(auth) => Some(AuthMethod::ApiKey(Arc::new(auth))),
            Err(err) => {
                let span = header_span.unwrap_or_else(|| item.span());
                self.report.invalid(span, &header_key, err.to_string());
                None
            }
        }
    }

    /// `{ identity = "...", key = "..." }`
    fn key_entry(&mut self, entry: &Spanned<Value>, entry_key: &str) -> Option<ApiKeyEntry> {
        let Value::Table(fields) = entry.get_ref() else {
            self.report.invalid(
                entry.span(),
                entry_key,
                "expected { identity = \"...\", key = \"...\" }",
            );
            return None;
        };
        let mut identity = None;
        let mut secret = None;
        for (name, value) in fields {
            match (name.as_str(), value.get_ref()) {
                ("identity", Value::String(text)) => identity = Some(text.as_str()),
                ("key", Value::String(text)) => secret = Some(text.as_str()),
                ("identity" | "key", _) => {
                    self.report.invalid(
                        value.span(),
                        format!("{entry_key}.{name}"),
                        "expected a string",
                    );
                    return None;
                }
                _ => {
                    self.report.error(
                        Some(value.span()),
                        format!("{entry_key}.{name}"),
                        "unknown key (accepted here: identity, key)",
                    );
                    return None;
                }
            }
        }
        let (Some(identity), Some(secret)) = (identity, secret) else {
            self.report.error(
                Some(entry.span()),
                entry_key,
                "needs both `identity` and `key`",
            );
            return None;
        };
        match ApiKeyEntry::new(identity, secret) {
            Ok(entry) => Some(entry),
            Err(message) => {
                // Never quote the key itself.
                self.report.error(Some(entry.span()), entry_key, message);
                None
            }
        }
    }

    fn jwt(&mut self, item: &Spanned<RawAuth>, s: &str, realm: Realm) -> Option<AuthMethod> {
        let raw = item.get_ref();
        if raw.secret.is_none() && raw.public_key_file.is_none() && raw.jwks_file.is_none() {
            self.report.error(
                Some(item.span()),
                s,
                "kind = \"jwt\" needs `secret`, `public_key_file` or `jwks_file`",
            );
            return None;
        }
        let keys = self.jwt_keys(item, s);
        let issuer = self
            .string(&raw.issuer, &key(s, "issuer"))
            .map(|(text, _)| text.to_owned())
            .optional();
        let audience = self.string_or_strings(&raw.audience, &key(s, "audience"));
        let leeway = self
            .duration(
                &raw.leeway,
                &key(s, "leeway"),
                Duration::ZERO,
                MAX_JWT_LEEWAY,
            )
            .or(DEFAULT_JWT_LEEWAY);
        let require_exp = self
            .boolean(&raw.require_exp, &key(s, "require_exp"))
            .or(true);
        let identity_claim = self
            .string(&raw.identity_claim, &key(s, "identity_claim"))
            .map(|(text, _)| text.to_owned())
            .or(crate::auth::jwt::DEFAULT_IDENTITY_CLAIM.to_owned());
        let rules = self.claim_rules(&raw.require, &key(s, "require"));
        let forward = self.forward_claims(&raw.forward_claims, &key(s, "forward_claims"));
        let cache = self.token_cache(raw, s);
        let forward = forward?;
        let claim_headers = forward
            .iter()
            .map(|f: &ForwardClaim| f.header.to_ascii_lowercase().into_boxed_str())
            .collect();
        let mut settings = JwtSettings::new(keys?);
        settings.issuer = issuer?;
        settings.audiences = audience?;
        settings.leeway_seconds = leeway?.as_secs();
        settings.require_expiry = require_exp?;
        settings.identity_claim = identity_claim?;
        settings.rules = rules?;
        settings.forward = forward;
        settings.realm = realm;
        let (cache_entries, cache_ttl) = cache?;
        match JwtVerifier::new(settings) {
            Ok(verifier) => Some(AuthMethod::Jwt {
                verifier: Arc::new(verifier),
                claim_headers,
                cache_entries,
                cache_ttl,
            }),
            Err(err) => {
                self.report_verifier_error(item, s, &err);
                None
            }
        }
    }

    /// The verification keys: a shared `secret`, a `public_key_file` and a `jwks_file`,
    /// together. `None` after reporting a mistake.
    fn jwt_keys(&mut self, item: &Spanned<RawAuth>, s: &str) -> Option<KeySet> {
        let raw = item.get_ref();
        let mut keys = Vec::new();
        let mut ok = true;
        if let Got::Value((text, span)) = self.string(&raw.secret, &key(s, "secret")) {
            match JwtKey::hs256(text.as_bytes(), None) {
                Ok(jwt_key) => keys.push(jwt_key),
                Err(err) => {
                    self.report
                        .error(Some(span), key(s, "secret"), err.to_string());
                    ok = false;
                }
            }
        } else if raw.secret.is_some() {
            ok = false;
        }
        let pem_key = key(s, "public_key_file");
        match self.read_file(&raw.public_key_file, &pem_key) {
            Got::Value((bytes, path, span)) => match JwtKey::from_pem(&bytes, None) {
                Ok(jwt_key) => keys.push(jwt_key),
                Err(err) => {
                    self.report
                        .invalid(span, &pem_key, format!("{}: {err}", path.display()));
                    ok = false;
                }
            },
            Got::Invalid => ok = false,
            Got::Absent => {}
        }
        let mut key_set = None;
        let jwks_key = key(s, "jwks_file");
        match self.read_file(&raw.jwks_file, &jwks_key) {
            Got::Value((bytes, path, span)) => match KeySet::from_jwks(&bytes) {
                Ok((set, _summary)) => key_set = Some(set),
                Err(err) => {
                    self.report
                        .invalid(span, &jwks_key, format!("{}: {err}", path.display()));
                    ok = false;
                }
            },
            Got::Invalid => ok = false,
            Got::Absent => {}
        }
        let merged = match (keys.is_empty(), key_set) {
            (true, jwks) => jwks,
            (false, jwks) => {
                let merged = KeySet::new(keys).and_then(|own| match jwks {
                    Some(jwks) => own.merge(jwks),
                    None => Ok(own),
                });
                match merged {
                    Ok(set) => Some(set),
                    Err(err) => {
                        self.report.error(Some(item.span()), s, err.to_string());
                        None
                    }
                }
            }
        };
        if ok { merged } else { None }
    }

    /// `cache_entries` and `cache_ttl`.
    fn token_cache(&mut self, raw: &RawAuth, s: &str) -> Option<(usize, Duration)> {
        let cache_entries = self
            .integer(
                &raw.cache_entries,
                &key(s, "cache_entries"),
                0,
                MAX_TOKEN_CACHE_ENTRIES as i128,
            )
            .map(|n| n as usize)
            .or(DEFAULT_TOKEN_CACHE_ENTRIES);
        let cache_ttl = self
            .duration(
                &raw.cache_ttl,
                &key(s, "cache_ttl"),
                Duration::from_secs(1),
                MAX_TOKEN_CACHE_TTL,
            )
            .or(DEFAULT_TOKEN_CACHE_TTL);
        Some((cache_entries?, cache_ttl?))
    }

    /// Reports a verifier's refusal of its settings at the key that holds the setting.
    fn report_verifier_error(
        &mut self,
        item: &Spanned<RawAuth>,
        s: &str,
        err: &crate::auth::jwt::JwtConfigError,
    ) {
        let raw = item.get_ref();
        let setting = err.setting.split('[').next().unwrap_or("");
        let field = match setting {
            "forward" => &raw.forward_claims,
            "require" => &raw.require,
            "audience" => &raw.audience,
            _ => &raw.identity_claim,
        };
        let span = field.as_ref().map_or_else(|| item.span(), Spanned::span);
        let name = match setting {
            "forward" => "forward_claims",
            other => other,
        };
        self.report.invalid(span, key(s, name), err.reason);
    }

    /// `"one"` or `["one", "two"]`.
    fn string_or_strings(&mut self, field: &Field, key: &str) -> Option<Vec<String>> {
        let Some(f) = field else {
            return Some(Vec::new());
        };
        match f.get_ref() {
            Value::String(text) => Some(vec![text.clone()]),
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.get_ref() {
                        Value::String(text) => out.push(text.clone()),
                        _ => {
                            self.report.invalid(
                                item.span(),
                                format!("{key}[{}]", i + 1),
                                "expected a string",
                            );
                            return None;
                        }
                    }
                }
                Some(out)
            }
            _ => {
                self.report
                    .invalid(f.span(), key, "expected a string or an array of strings");
                None
            }
        }
    }

    /// `require = [{ claim = "scope", contains = "read" }, { claim = "role", equals = "admin" }]`
    fn claim_rules(&mut self, field: &Field, list_key: &str) -> Option<Vec<ClaimRule>> {
        let items = match self.array(
            field,
            list_key,
            "an array like [{ claim = \"scope\", contains = \"read\" }]",
        ) {
            Got::Absent => return Some(Vec::new()),
            Got::Invalid => return None,
            Got::Value(items) => items,
        };
        let mut rules = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let item_key = format!("{list_key}[{}]", i + 1);
            let Value::Table(fields) = item.get_ref() else {
                self.report.invalid(
                    item.span(),
                    &item_key,
                    "expected { claim = \"...\", equals = \"...\" } or contains = \"...\"",
                );
                ok = false;
                continue;
            };
            let mut claim = None;
            let mut check = None;
            for (name, value) in fields {
                let Value::String(text) = value.get_ref() else {
                    self.report.invalid(
                        value.span(),
                        format!("{item_key}.{name}"),
                        "expected a string",
                    );
                    ok = false;
                    continue;
                };
                match name.as_str() {
                    "claim" => claim = Some(text.clone()),
                    "equals" | "contains" if check.is_some() => {
                        self.report.error(
                            Some(value.span()),
                            format!("{item_key}.{name}"),
                            "use either `equals` or `contains`, not both",
                        );
                        ok = false;
                    }
                    "equals" => check = Some(ClaimCheck::Equals(text.clone())),
                    "contains" => check = Some(ClaimCheck::Contains(text.clone())),
                    _ => {
                        self.report.error(
                            Some(value.span()),
                            format!("{item_key}.{name}"),
                            "unknown key (accepted here: claim, equals, contains)",
                        );
                        ok = false;
                    }
                }
            }
            match (claim, check) {
                (Some(claim), Some(check)) => rules.push(ClaimRule { claim, check }),
                _ => {
                    self.report.error(
                        Some(item.span()),
                        &item_key,
                        "needs `claim` and one of `equals` or `contains`",
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(rules)
    }

    /// `forward_claims = { email = "x-user-email" }`: claim -> upstream header.
    fn forward_claims(&mut self, field: &Field, table_key: &str) -> Option<Vec<ForwardClaim>> {
        let entries = match self.table(
            field,
            table_key,
            "a table like { email = \"x-user-email\" }",
        ) {
            Got::Absent => return Some(Vec::new()),
            Got::Invalid => return None,
            Got::Value(entries) => entries,
        };
        let mut forward = Vec::new();
        let mut seen: HashMap<String, ()> = HashMap::new();
        let mut ok = true;
        for (claim, value) in entries {
            let entry_key = format!("{table_key}.{claim}");
            let Value::String(header) = value.get_ref() else {
                self.report
                    .invalid(value.span(), &entry_key, "expected a header name");
                ok = false;
                continue;
            };
            if let Some(message) = super::added_request_header_problem(header) {
                self.report.invalid(value.span(), &entry_key, message);
                ok = false;
                continue;
            }
            if seen.insert(header.to_ascii_lowercase(), ()).is_some() {
                self.report.invalid(
                    value.span(),
                    &entry_key,
                    "this header already carries another claim",
                );
                ok = false;
                continue;
            }
            forward.push(ForwardClaim {
                claim: claim.clone(),
                header: header.clone(),
            });
        }
        ok.then_some(forward)
    }

    /// Reads a file named by `field`, relative to the configuration file's directory.
    pub(super) fn read_file(
        &mut self,
        field: &Field,
        key: &str,
    ) -> Got<(Vec<u8>, PathBuf, Range<usize>)> {
        let (text, span) = match self.string(field, key) {
            Got::Value(value) => value,
            Got::Absent => return Got::Absent,
            Got::Invalid => return Got::Invalid,
        };
        let path = super::relative_to_config(&self.origin, text);
        match std::fs::read(&path) {
            Ok(bytes) => Got::Value((bytes, path, span)),
            Err(err) => self.bad(span, key, format!("cannot read {}: {err}", path.display())),
        }
    }

    /// A route's `auth = "<name>"`: the index of the policy.
    pub(super) fn route_auth(&mut self, field: &Field, key: &str) -> Option<Option<usize>> {
        let (name, span) = match self.string(field, key) {
            Got::Absent => return Some(None),
            Got::Invalid => return None,
            Got::Value(value) => value,
        };
        match self
            .auth_names
            .iter()
            .position(|n| n.as_deref() == Some(name))
        {
            Some(index) => Some(Some(index)),
            None => {
                let defined: Vec<String> = self
                    .auth_names
                    .iter()
                    .flatten()
                    .map(|n| format!("{n:?}"))
                    .collect();
                let message = if defined.is_empty() {
                    format!("no [[auth]] named {name:?} (none is defined)")
                } else {
                    format!(
                        "no [[auth]] named {name:?} (defined: {})",
                        defined.join(", ")
                    )
                };
                self.bad::<()>(span, key, message);
                None
            }
        }
    }

    /// A route's `rate_limit = { ... }`. `authenticated` says whether the route has `auth`, which
    /// `key = "identity"` needs.
    pub(super) fn rate_limit(
        &mut self,
        raw: Option<&Spanned<RawRateLimit>>,
        s: &str,
        authenticated: bool,
    ) -> Option<Option<RateLimitConfig>> {
        let Some(raw_limit) = raw else {
            return Some(None);
        };
        let table_key = key(s, "rate_limit");
        let raw = raw_limit.get_ref();
        let rate_key = format!("{table_key}.rate");
        let rate =
            self.string(&raw.rate, &rate_key)
                .and_then(|(text, span)| match Rate::parse(text) {
                    Ok(rate) => Got::Value((rate, span)),
                    Err(message) => self.bad(span, &rate_key, message),
                });
        let rate = self.required(rate, &raw_limit.span(), &rate_key);
        let burst = self
            .integer(
                &raw.burst,
                &format!("{table_key}.burst"),
                1,
                crate::ratelimit::rate::MAX_BURST.into(),
            )
            .map(|n| n as u32)
            .optional();
        let key_key = format!("{table_key}.key");
        let spec = self
            .string(&raw.key, &key_key)
            .and_then(|(text, span)| match KeySpec::parse(text) {
                Ok(KeySpec::Identity) if !authenticated => self.bad(
                    span,
                    &key_key,
                    "key = \"identity\" needs `auth` on the route (there is no identity otherwise)",
                ),
                Ok(spec) => Got::Value((spec, span)),
                Err(message) => self.bad(span, &key_key, message),
            })
            .map(|(spec, _)| spec)
            .or(KeySpec::default());
        let spec = match (spec, &raw.ipv6_prefix) {
            (Some(spec), Some(prefix_field)) => {
                let prefix_key = format!("{table_key}.ipv6_prefix");
                match self.integer(&raw.ipv6_prefix, &prefix_key, 1, 128) {
                    Got::Value(prefix) => match spec.with_ipv6_prefix(prefix as u8) {
                        Ok(spec) => Some(spec),
                        Err(message) => {
                            self.report
                                .invalid(prefix_field.span(), &prefix_key, message);
                            None
                        }
                    },
                    _ => None,
                }
            }
            (spec, _) => spec,
        };
        let keys = self
            .integer(
                &raw.keys,
                &format!("{table_key}.keys"),
                crate::ratelimit::PROBE_WINDOW as i128,
                MAX_KEYS_PER_SHARD as i128,
            )
            .map(|n| n as usize)
            .or(crate::ratelimit::DEFAULT_KEYS_PER_SHARD);
        let (rate, rate_span) = rate?;
        let quota = match Quota::new(rate, burst?) {
            Ok(quota) => quota,
            Err(message) => {
                let span = raw.burst.as_ref().map_or(rate_span, Spanned::span);
                self.report
                    .invalid(span, format!("{table_key}.burst"), message);
                return None;
            }
        };
        Some(Some(RateLimitConfig {
            quota,
            key: spec?,
            keys_per_shard: keys?,
        }))
    }
}

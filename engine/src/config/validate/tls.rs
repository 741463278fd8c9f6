//! A listener's `tls = { certificates, unknown_name, min_version, client_ca, client_auth,
//! client_cert_header }`, an upstream's `tls = { sni, ca, verify, cert, key }`, and a route's
//! `redirect_https` / `https_port`: raw values -> [`ListenerTls`], every mistake reported with
//! its key and line like the rest of the file.
//!
//! Reads the certificate and key files, at paths relative to the configuration file's
//! directory, when the configuration is loaded: a reload reads them again, so replacing the
//! files and reloading swaps the certificates. A certificate that cannot be served (unreadable,
//! malformed, expired, its key not matching) is an error at its `cert` or `key` key, naming
//! the file and line inside it, and the configuration is refused.

use std::sync::Arc;

use toml::Spanned;

use super::super::defaults::*;
use super::super::file::{Field, RawListenerTls, RawUpstreamTls};
use super::{Got, Validator, key};
use rustls::pki_types::ServerName;

use crate::tls::{
    Certificate, ClientAuth, ListenerTls, MinVersion, UnknownName, UpstreamTls, certificate,
};

impl Validator<'_, '_> {
    /// `listener[n].tls`.
    pub(super) fn listener_tls(
        &mut self,
        raw: Option<&Spanned<RawListenerTls>>,
        s: &str,
    ) -> Option<Option<Arc<ListenerTls>>> {
        let Some(raw_tls) = raw else {
            return Some(None);
        };
        let t = key(s, "tls");
        let raw = raw_tls.get_ref();
        let unknown_key = key(&t, "unknown_name");
        let unknown_name = self
            .string(&raw.unknown_name, &unknown_key)
            .and_then(|(text, span)| match text {
                "default" => Got::Value(UnknownName::Default),
                "refuse" => Got::Value(UnknownName::Refuse),
                _ => self.bad(span, &unknown_key, "expected \"default\" or \"refuse\""),
            })
            .or(DEFAULT_UNKNOWN_NAME);
        let version_key = key(&t, "min_version");
        let min_version = self
            .string(&raw.min_version, &version_key)
            .and_then(|(text, span)| match text {
                "1.2" => Got::Value(MinVersion::Tls12),
                "1.3" => Got::Value(MinVersion::Tls13),
                _ => self.bad(
                    span,
                    &version_key,
                    "expected \"1.2\" or \"1.3\" (TLS 1.0 and 1.1 are not offered)",
                ),
            })
            .or(DEFAULT_MIN_TLS_VERSION);
        let items = raw
            .certificates
            .as_ref()
            .map_or(&[][..], |t| t.get_ref().as_slice());
        let certs_key = key(&t, "certificates");
        if items.is_empty() && !self.was_rejected(&certs_key) {
            self.report.error(
                Some(raw_tls.span()),
                certs_key.clone(),
                "at least one certificate is required, like: certificates = [{ cert = \
                 \"chain.pem\", key = \"key.pem\" }]",
            );
            return None;
        }
        if items.len() > MAX_CERTIFICATES {
            self.report.error(
                Some(raw_tls.span()),
                certs_key,
                format!("at most {MAX_CERTIFICATES} certificates"),
            );
            return None;
        }
        let now = certificate::unix_now();
        let mut certificates = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let c = format!("{certs_key}[{}]", i + 1);
            match self.certificate(
                &item.get_ref().cert,
                &item.get_ref().key,
                &item.span(),
                &c,
                now,
            ) {
                Some(cert) => certificates.push(cert),
                None => ok = false,
            }
        }
        let client = self.client_auth(raw, &t);
        let (unknown_name, min_version, client) = (unknown_name?, min_version?, client?);
        if !ok {
            return None;
        }
        let tls = ListenerTls::new(certificates, unknown_name, min_version);
        Some(Some(Arc::new(match client {
            Some(client) => tls.with_client_auth(client),
            None => tls,
        })))
    }

    /// `client_ca`, `client_auth`, `client_cert_header`.
    fn client_auth(&mut self, raw: &RawListenerTls, t: &str) -> Option<Option<ClientAuth>> {
        let ca_key = key(t, "client_ca");
        let auth_key = key(t, "client_auth");
        let header_key = key(t, "client_cert_header");
        let required =
            self.string(&raw.client_auth, &auth_key)
                .and_then(|(text, span)| match text {
                    "required" => Got::Value(true),
                    "optional" => Got::Value(false),
                    _ => self.bad(span, &auth_key, "expected \"required\" or \"optional\""),
                });
        let header = self
            .string(&raw.client_cert_header, &header_key)
            .and_then(
                |(text, span)| match super::added_request_header_problem(text) {
                    Some(message) => self.bad(span, &header_key, message),
                    None => Got::Value(text.to_ascii_lowercase().into_boxed_str()),
                },
            );
        let ca = self.read_file(&raw.client_ca, &ca_key);
        let (bytes, path, span) = match ca {
            Got::Value(file) => file,
            Got::Invalid => return None,
            Got::Absent => {
                for (field, name) in [
                    (&raw.client_auth, &auth_key),
                    (&raw.client_cert_header, &header_key),
                ] {
                    if let Some(field) = field {
                        self.report.error(
                            Some(field.span()),
                            name.clone(),
                            "only applies with client_ca (the CA bundle client certificates \
                             must lead to)",
                        );
                        return None;
                    }
                }
                return Some(None);
            }
        };
        let roots = match crate::tls::load_roots(&bytes) {
            Ok(roots) => roots,
            Err((line, message)) => {
                let at = match line {
                    0 => format!("{}: {message}", path.display()),
                    line => format!("{}:{line}: {message}", path.display()),
                };
                self.bad::<()>(span, &ca_key, at);
                return None;
            }
        };
        Some(Some(ClientAuth {
            ca_path: path,
            roots: Arc::new(roots),
            required: required.or(DEFAULT_CLIENT_AUTH_REQUIRED)?,
            header: header.optional()?,
        }))
    }

    /// One `{ cert, key }`.
    fn certificate(
        &mut self,
        cert: &Field,
        key_field: &Field,
        header: &std::ops::Range<usize>,
        c: &str,
        now: i64,
    ) -> Option<Certificate> {
        let cert_key = key(c, "cert");
        let key_key = key(c, "key");
        let cert_file = self.read_file(cert, &cert_key);
        let key_file = self.read_file(key_field, &key_key);
        let (cert_pem, cert_path, cert_span) = self.required(cert_file, header, &cert_key)?;
        let (key_pem, key_path, key_span) = self.required(key_file, header, &key_key)?;
        match certificate::load(&cert_path, &cert_pem, &key_path, &key_pem, now) {
            Ok(cert) => Some(cert),
            Err(err) => {
                let (span, at) = if err.file == key_path {
                    (key_span, key_key)
                } else {
                    (cert_span, cert_key)
                };
                self.bad::<()>(span, &at, err.to_string());
                None
            }
        }
    }

    /// `upstream[n].tls`.
    pub(super) fn upstream_tls(
        &mut self,
        raw: Option<&Spanned<RawUpstreamTls>>,
        s: &str,
    ) -> Option<Option<Arc<UpstreamTls>>> {
        let Some(raw_tls) = raw else {
            return Some(None);
        };
        let t = key(s, "tls");
        let raw = raw_tls.get_ref();
        let sni_key = key(&t, "sni");
        let sni =
            self.string(&raw.sni, &sni_key).and_then(|(text, span)| {
                match ServerName::try_from(text.to_owned()) {
                    Ok(name @ ServerName::DnsName(_)) => Got::Value(name),
                    _ => self.bad(
                        span,
                        &sni_key,
                        "expected a DNS name (leave sni out to verify the endpoint's address)",
                    ),
                }
            });
        let verify_key = key(&t, "verify");
        let verify = self
            .boolean(&raw.verify, &verify_key)
            .or(DEFAULT_UPSTREAM_TLS_VERIFY);
        let ca_key = key(&t, "ca");
        let ca = match self.read_file(&raw.ca, &ca_key) {
            Got::Value((bytes, path, span)) => match crate::tls::load_roots_only(&bytes) {
                Ok(roots) => Some(Some((path, Arc::new(roots), bytes))),
                Err((line, message)) => {
                    let at = match line {
                        0 => format!("{}: {message}", path.display()),
                        line => format!("{}:{line}: {message}", path.display()),
                    };
                    self.bad::<()>(span, &ca_key, at);
                    None
                }
            },
            Got::Absent => Some(None),
            Got::Invalid => None,
        };
        if verify == Some(true) && matches!(ca, Some(None)) {
            self.report.error(
                Some(raw_tls.span()),
                ca_key.clone(),
                "required with verify = true (the default): the CA bundle the upstream's \
                 certificate must chain to (coregate does not read the system's trust store); \
                 verify = false trusts any certificate",
            );
            return None;
        }
        let cert_key = key(&t, "cert");
        let key_key = key(&t, "key");
        let cert_file = self.read_file(&raw.cert, &cert_key);
        let key_file = self.read_file(&raw.key, &key_key);
        let client_cert = match (cert_file, key_file) {
            (Got::Absent, Got::Absent) => Some(None),
            (
                Got::Value((cert_pem, cert_path, cert_span)),
                Got::Value((key_pem, key_path, key_span)),
            ) => {
                match certificate::load_for(
                    &cert_path,
                    &cert_pem,
                    &key_path,
                    &key_pem,
                    certificate::unix_now(),
                    certificate::Usage::Client,
                ) {
                    Ok(cert) => {
                        let mut bytes = cert_pem;
                        bytes.extend_from_slice(&key_pem);
                        Some(Some((cert, bytes)))
                    }
                    Err(err) => {
                        let (span, at) = if err.file == key_path {
                            (key_span, key_key)
                        } else {
                            (cert_span, cert_key)
                        };
                        self.bad::<()>(span, &at, err.to_string());
                        None
                    }
                }
            }
            (Got::Invalid, _) | (_, Got::Invalid) => None,
            (Got::Value(_), Got::Absent) | (Got::Absent, Got::Value(_)) => {
                self.report.error(
                    Some(raw_tls.span()),
                    t.clone(),
                    "cert and key go together (coregate's client certificate for mTLS)",
                );
                None
            }
        };
        let (sni, verify, ca, client_cert) = (sni.optional()?, verify?, ca?, client_cert?);
        Some(Some(Arc::new(UpstreamTls::new(
            sni,
            verify,
            ca,
            client_cert,
        ))))
    }

    /// A route's `redirect_https` and `https_port`: the port to redirect to, when on.
    pub(super) fn redirect_https(
        &mut self,
        redirect: &Field,
        port: &Field,
        s: &str,
    ) -> Option<Option<u16>> {
        let on = self
            .boolean(redirect, &key(s, "redirect_https"))
            .or(DEFAULT_REDIRECT_HTTPS);
        let port_key = key(s, "https_port");
        let https_port = self
            .integer(port, &port_key, 1, u16::MAX.into())
            .map(|n| n as u16);
        let https_port = match (on, https_port) {
            (Some(false), Got::Value(_)) => {
                let span = port.as_ref().map_or(0..0, Spanned::span);
                self.bad::<()>(span, &port_key, "only applies with redirect_https = true");
                return None;
            }
            (_, got) => got.or(DEFAULT_HTTPS_PORT)?,
        };
        Some(on?.then_some(https_port))
    }
}

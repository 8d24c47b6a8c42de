//! TLS for client connections (rustls, ring): the settings Redis has (`tls-port`,
//! `tls-cert-file`, `tls-key-file`, `tls-ca-cert-file`, `tls-auth-clients`,
//! `tls-protocols`, `tls-ciphersuites`, `tls-ciphers`, `tls-auth-clients-user`) and the
//! acceptor built from them.
//!
//! **Reload without dropping connections.** The acceptor's configuration sits behind a lock
//! as an `Arc`; each new connection takes the current one, so replacing it (SIGHUP, after
//! the operator renewed a certificate) changes the certificate new clients see while
//! connections already open keep the session they negotiated. A reload that fails (a
//! missing or mismatched file) keeps the old configuration and says why.
//!
//! **Client certificates.** With `tls-auth-clients yes` a client must present a certificate
//! chained to `tls-ca-cert-file` (expired or foreign ones fail the handshake); `optional`
//! checks one if presented. Such a listener counts as authenticated for protected mode (the
//! certificate is the credential), as in Redis. With `tls-auth-clients-user CN` a verified
//! certificate's Common Name logs the connection in as the ACL user of that name, if it
//! exists and is enabled.

pub mod cert;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// `tls-auth-clients`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthClients {
    No,
    Optional,
    Yes,
}

impl AuthClients {
    pub fn parse(s: &str) -> Result<AuthClients, String> {
        match s.to_ascii_lowercase().as_str() {
            "no" => Ok(AuthClients::No),
            "optional" => Ok(AuthClients::Optional),
            "yes" => Ok(AuthClients::Yes),
            _ => Err(format!(
                "tls-auth-clients {s}: expected yes, no or optional"
            )),
        }
    }
}

/// The TLS settings of the client listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub port: u16,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_cert_file: Option<PathBuf>,
    pub auth_clients: AuthClients,
    /// `TLSv1.2`, `TLSv1.3` (empty: both).
    pub protocols: Vec<String>,
    /// TLS 1.3 suites, OpenSSL's names (`TLS_AES_256_GCM_SHA384`…); empty: all.
    pub ciphersuites: Vec<String>,
    /// TLS 1.2 suites, OpenSSL's names (`ECDHE-RSA-AES128-GCM-SHA256`…); empty: all.
    pub ciphers: Vec<String>,
    /// `tls-auth-clients-user CN`.
    pub user_from_cn: bool,
}

/// OpenSSL's name of each suite rustls (ring) offers, and rustls's.
const SUITES: &[(&str, &str)] = &[
    ("TLS_AES_128_GCM_SHA256", "TLS13_AES_128_GCM_SHA256"),
    ("TLS_AES_256_GCM_SHA384", "TLS13_AES_256_GCM_SHA384"),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS13_CHACHA20_POLY1305_SHA256",
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
];

/// The suites and versions the options allow, as a crypto provider and a version list.
fn provider(
    o: &TlsOptions,
) -> Result<(CryptoProvider, Vec<&'static SupportedProtocolVersion>), String> {
    let mut versions = Vec::new();
    let protocols: Vec<String> = if o.protocols.is_empty() {
        vec!["TLSv1.2".into(), "TLSv1.3".into()]
    } else {
        o.protocols.clone()
    };
    for p in &protocols {
        versions.push(match p.as_str() {
            "TLSv1.2" => &rustls::version::TLS12,
            "TLSv1.3" => &rustls::version::TLS13,
            other => {
                return Err(format!(
                    "tls-protocols: {other} is not supported (TLSv1.2 and TLSv1.3 are)"
                ))
            }
        });
    }
    let mut p = rustls::crypto::ring::default_provider();
    let wanted = |list: &[String], tls13: bool| -> Result<Option<Vec<&'static str>>, String> {
        if list.is_empty() {
            return Ok(None);
        }
        list.iter()
            .map(|name| {
                SUITES
                    .iter()
                    .find(|(ossl, _)| ossl == name)
                    .filter(|(_, r)| r.starts_with("TLS13") == tls13)
                    .map(|(_, r)| *r)
                    .ok_or_else(|| {
                        format!(
                            "{}: {name} is not a suite sessiond offers",
                            if tls13 {
                                "tls-ciphersuites"
                            } else {
                                "tls-ciphers"
                            }
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    };
    let v13 = wanted(&o.ciphersuites, true)?;
    let v12 = wanted(&o.ciphers, false)?;
    p.cipher_suites.retain(|s| {
        let name = format!("{:?}", s.suite());
        let list = if name.starts_with("TLS13") {
            &v13
        } else {
            &v12
        };
        list.as_ref().is_none_or(|l| l.contains(&name.as_str()))
    });
    if p.cipher_suites.is_empty() {
        return Err("tls-ciphersuites/tls-ciphers leave no cipher suite".into());
    }
    Ok((p, versions))
}

pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", path.display()));
    }
    Ok(certs)
}

pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(path)? {
        roots
            .add(c)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// A server configuration from the files the options name.
pub fn server_config(o: &TlsOptions) -> Result<ServerConfig, String> {
    let (provider, versions) = provider(o)?;
    let provider = Arc::new(provider);
    let verifier = match (o.auth_clients, &o.ca_cert_file) {
        (AuthClients::No, _) => WebPkiClientVerifier::no_client_auth(),
        (_, None) => {
            return Err(
                "tls-auth-clients yes/optional needs tls-ca-cert-file (the CA client certificates are checked against)"
                    .into(),
            )
        }
        (auth, Some(ca)) => {
            let b = WebPkiClientVerifier::builder_with_provider(
                Arc::new(read_roots(ca)?),
                provider.clone(),
            );
            let b = if auth == AuthClients::Optional {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build().map_err(|e| format!("tls-ca-cert-file: {e}"))?
        }
    };
    ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(&o.cert_file)?, read_key(&o.key_file)?)
        .map_err(|e| format!("tls-cert-file/tls-key-file: {e}"))
}

/// The client listener's TLS: options and the configuration new connections get.
pub struct TlsServer {
    pub options: TlsOptions,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsServer {
    pub fn new(options: TlsOptions) -> Result<TlsServer, String> {
        let config = server_config(&options)?;
        Ok(TlsServer {
            options,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// The acceptor for the next connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }

    /// Reads the files again (SIGHUP); on an error the old configuration stays.
    pub fn reload(&self) -> Result<(), String> {
        let config = server_config(&self.options)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(())
    }

    /// Whether a client on this listener has proven who it is by its certificate.
    pub fn clients_authenticated(&self) -> bool {
        self.options.auth_clients == AuthClients::Yes
    }
}

/// What a TLS handshake established about the client, for the connection.
#[derive(Debug, Clone, Default)]
pub struct TlsPeer {
    /// The listener requires client certificates (protected mode counts it as trusted).
    pub verified: bool,
    /// The ACL user named by the certificate's CN (`tls-auth-clients-user CN`).
    pub cert_user: Option<String>,
}

//! The TLS listener (`tls-*`), combined by `Config::finish` into `tls::TlsOptions`.

use super::*;

pub(super) static ROWS: &[Def] = &[
    Def::new(
        "tls-port",
        Int,
        "PORT",
        "Also accept TLS connections on this port, on the addresses of --listen (as Redis's \
         `tls-port`). Needs --tls-cert-file and --tls-key-file.",
        |c, v| {
            c.parts.tls_port = Some(int_in(v, 0, 65535)? as u16).filter(|p| *p != 0);
            Ok(())
        },
    ),
    Def::new(
        "tls-cert-file",
        Text,
        "PATH",
        "The server's certificate chain (PEM), re-read on SIGHUP.",
        |c, v| {
            c.parts.tls_cert_file = text(v);
            Ok(())
        },
    ),
    Def::new(
        "tls-key-file",
        Text,
        "PATH",
        "The server's private key (PEM), re-read on SIGHUP.",
        |c, v| {
            c.parts.tls_key_file = text(v);
            Ok(())
        },
    ),
    Def::new(
        "tls-ca-cert-file",
        Text,
        "PATH",
        "CA certificates (PEM) client certificates are checked against.",
        |c, v| {
            c.parts.tls_ca_cert_file = text(v);
            Ok(())
        },
    ),
    Def::new(
        "tls-auth-clients",
        Text,
        "yes|no|optional",
        "Whether clients must present a certificate: yes (default, as Redis), optional, no.",
        |c, v| {
            c.parts.tls_auth_clients = Some(crate::tls::AuthClients::parse(v)?);
            Ok(())
        },
    ),
    Def::new(
        "tls-protocols",
        Text,
        "LIST",
        "TLS versions to accept, space separated: `TLSv1.2 TLSv1.3` (the default).",
        |c, v| {
            c.parts.tls_protocols = split(v, ' ');
            Ok(())
        },
    ),
    Def::new(
        "tls-ciphersuites",
        Text,
        "LIST",
        "TLS 1.3 cipher suites, OpenSSL's names, colon separated (default: all rustls offers).",
        |c, v| {
            c.parts.tls_ciphersuites = split(v, ':');
            Ok(())
        },
    ),
    Def::new(
        "tls-ciphers",
        Text,
        "LIST",
        "TLS 1.2 cipher suites, OpenSSL's names, colon separated (default: all rustls offers).",
        |c, v| {
            c.parts.tls_ciphers = split(v, ':');
            Ok(())
        },
    ),
    Def::new(
        "tls-auth-clients-user",
        Text,
        "off|CN",
        "`CN`: a client certificate's Common Name logs the connection in as that ACL user; \
         `off` (default): it does not.",
        |c, v| {
            c.parts.tls_user_from_cn = match v.to_ascii_lowercase().as_str() {
                "off" | "" => false,
                "cn" => true,
                _ => return Err("argument(s) must be one of the following: off, CN".into()),
            };
            Ok(())
        },
    ),
];

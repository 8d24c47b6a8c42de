//! The TLS listener's settings (`tls-*`).

use super::*;

/// The TLS listener's settings from flags and file; an error for a TLS setting without
/// `tls-port` or a port without its certificate and key.
pub(super) fn tls_options(
    args: &ServeArgs,
    file: &FileConfig,
) -> Result<Option<crate::tls::TlsOptions>, String> {
    let pick =
        |a: &Option<String>, f: &Option<String>| a.clone().or(f.clone()).filter(|s| !s.is_empty());
    let cert = pick(&args.tls_cert_file, &file.tls_cert_file);
    let key = pick(&args.tls_key_file, &file.tls_key_file);
    let Some(port) = args.tls_port.or(file.tls_port).filter(|p| *p != 0) else {
        if cert.is_some() || key.is_some() {
            return Err("tls-cert-file/tls-key-file are set but tls-port is not".into());
        }
        return Ok(None);
    };
    let (Some(cert), Some(key)) = (cert, key) else {
        return Err("tls-port needs tls-cert-file and tls-key-file".into());
    };
    let auth_clients = match pick(&args.tls_auth_clients, &file.tls_auth_clients) {
        Some(s) => crate::tls::AuthClients::parse(&s)?,
        None => crate::tls::AuthClients::Yes,
    };
    let user_from_cn = match pick(&args.tls_auth_clients_user, &file.tls_auth_clients_user)
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("off") => false,
        Some("cn") => true,
        Some(other) => return Err(format!("tls-auth-clients-user {other}: expected off or CN")),
    };
    let list = |v: Option<String>, sep: char| -> Vec<String> {
        v.map(|s| {
            s.split(sep)
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
    };
    Ok(Some(crate::tls::TlsOptions {
        port,
        cert_file: cert.into(),
        key_file: key.into(),
        ca_cert_file: pick(&args.tls_ca_cert_file, &file.tls_ca_cert_file).map(Into::into),
        auth_clients,
        protocols: list(pick(&args.tls_protocols, &file.tls_protocols), ' '),
        ciphersuites: list(pick(&args.tls_ciphersuites, &file.tls_ciphersuites), ':'),
        ciphers: list(pick(&args.tls_ciphers, &file.tls_ciphers), ':'),
        user_from_cn,
    }))
}

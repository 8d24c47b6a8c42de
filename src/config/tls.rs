//! The TLS listener's settings (`tls-*`) and the admin API's (`admin-*`), combined.

use super::Parts;

/// The TLS listener's settings; an error for a TLS setting without `tls-port` or a port
/// without its certificate and key.
pub(super) fn tls_options(p: &Parts) -> Result<Option<crate::tls::TlsOptions>, String> {
    let (cert, key) = (p.tls_cert_file.clone(), p.tls_key_file.clone());
    let Some(port) = p.tls_port else {
        if cert.is_some() || key.is_some() {
            return Err("tls-cert-file/tls-key-file are set but tls-port is not".into());
        }
        return Ok(None);
    };
    let (Some(cert), Some(key)) = (cert, key) else {
        return Err("tls-port needs tls-cert-file and tls-key-file".into());
    };
    Ok(Some(crate::tls::TlsOptions {
        port,
        cert_file: cert.into(),
        key_file: key.into(),
        ca_cert_file: p.tls_ca_cert_file.clone().map(Into::into),
        auth_clients: p.tls_auth_clients.unwrap_or(crate::tls::AuthClients::Yes),
        protocols: p.tls_protocols.clone(),
        ciphersuites: p.tls_ciphersuites.clone(),
        ciphers: p.tls_ciphers.clone(),
        user_from_cn: p.tls_user_from_cn,
    }))
}

/// The admin API's settings, if `admin-listen` is set.
pub(super) fn admin_options(p: &Parts) -> Result<Option<crate::admin::AdminConfig>, String> {
    let Some(listen) = p.admin_listen else {
        return Ok(None);
    };
    let tls = match (p.admin_tls_cert_file.clone(), p.admin_tls_key_file.clone()) {
        (Some(c), Some(k)) => Some((c.into(), k.into())),
        (None, None) => None,
        _ => return Err("--admin-tls-cert-file and --admin-tls-key-file go together".into()),
    };
    Ok(Some(crate::admin::AdminConfig {
        listen,
        token: p.admin_token.clone(),
        show_values: p.console_show_values,
        tls,
        allow_plaintext: p.admin_allow_plaintext,
    }))
}

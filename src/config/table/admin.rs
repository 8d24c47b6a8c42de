//! The admin API and console (`admin-*`, `console-show-values`).

use super::*;

pub(super) static ROWS: &[Def] = &[
    Def::new(
        "admin-listen",
        Text,
        "HOST:PORT",
        "Admin HTTP API (migration control and status), e.g. 127.0.0.1:6381. Off by default.",
        |c, v| {
            c.parts.admin_listen = match text(v) {
                None => None,
                Some(a) => Some(a.parse().map_err(|_| "expected HOST:PORT".to_string())?),
            };
            Ok(())
        },
    ),
    Def::new(
        "admin-tls-cert-file",
        Text,
        "PATH",
        "The admin API's and console's certificate chain (PEM): served over HTTPS, and \
         required for a non-loopback --admin-listen unless --admin-allow-plaintext yes.",
        |c, v| {
            c.parts.admin_tls_cert_file = text(v);
            Ok(())
        },
    ),
    Def::new(
        "admin-tls-key-file",
        Text,
        "PATH",
        "The admin API's private key (PEM).",
        |c, v| {
            c.parts.admin_tls_key_file = text(v);
            Ok(())
        },
    ),
    Def::new(
        "admin-allow-plaintext",
        Bool,
        "yes|no",
        "`yes`: serve the admin API over plain HTTP on a non-loopback address (trusted \
         networks only: the token crosses it readable). Default no.",
        |c, v| {
            c.parts.admin_allow_plaintext = yes_no(v)?;
            Ok(())
        },
    ),
    Def::new(
        "admin-token",
        Text,
        "TOKEN",
        "Bearer token the admin API requires. Default: a random one, written to \
         <dir>/admin.token for `sessiond ctl` (loopback admin addresses only).",
        |c, v| {
            c.parts.admin_token = text(v);
            Ok(())
        },
    )
    .secret(),
    Def::new(
        "console-show-values",
        Bool,
        "YES|NO",
        "Let the console's session lookup show values (`yes`/`no`). Default no: the console \
         shows a session's type, TTL, size and store, never its data.",
        |c, v| {
            c.parts.console_show_values = yes_no(v)?;
            Ok(())
        },
    ),
];

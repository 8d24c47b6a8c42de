//! The socket to an upstream: plain TCP, or TLS over it (`rediss://`,
//! `rediss+sentinel://`, `rediss+cluster://`), behind one type so the pool, pinned
//! connections, Sentinel queries and cluster discovery do not care which.
//!
//! TLS options ride on the URL's query: `tls-ca-cert-file` (the CA the server's certificate
//! must chain to; default: the system's roots are not read, so it is required unless
//! `tls-insecure`), `tls-cert-file`/`tls-key-file` (a client certificate, for servers with
//! `tls-auth-clients yes`), `tls-server-name` (the name checked in the server's certificate;
//! default: the host of each address, which for an IP address is that IP).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How sessiond speaks TLS to its upstreams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsUpstream {
    pub ca_cert_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name: Option<String>,
}

/// A ready connector for [`TlsUpstream`] (files read once, at start or retarget).
#[derive(Clone)]
pub struct Connector {
    inner: tokio_rustls::TlsConnector,
    server_name: Option<String>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsUpstream {
    pub fn connector(&self) -> Result<Connector, String> {
        let ca = self.ca_cert_file.as_ref().ok_or(
            "rediss://: tls-ca-cert-file is required (the CA the server's certificate chains to)",
        )?;
        let roots = crate::tls::read_roots(std::path::Path::new(ca))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .with_root_certificates(roots);
        let config = match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => builder
                .with_client_auth_cert(
                    crate::tls::read_certs(std::path::Path::new(c))?,
                    crate::tls::read_key(std::path::Path::new(k))?,
                )
                .map_err(|e| format!("tls-cert-file/tls-key-file: {e}"))?,
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("tls-cert-file and tls-key-file go together".into()),
        };
        Ok(Connector {
            inner: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name: self.server_name.clone(),
        })
    }
}

pub enum UpStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl UpStream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            UpStream::Plain(s) => s,
            UpStream::Tls(s) => s.get_ref().0,
        }
    }

    /// Whether an idle connection can be reused: nothing to read and not closed. Peeks at
    /// the socket (never consumes: under TLS the bytes belong to the session).
    pub fn is_idle_open(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut b = [0u8; 1];
        // SAFETY: recv with MSG_PEEK on a socket this value owns, into a 1-byte buffer.
        let n = unsafe {
            libc::recv(
                self.tcp().as_raw_fd(),
                b.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
    }
}

/// Connects to `addr` (`host:port`), with TLS when `tls` is given, within `timeout`.
pub async fn dial(
    addr: &str,
    tls: Option<&Connector>,
    timeout: Duration,
) -> Result<UpStream, String> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr}: timed out"))?
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let Some(c) = tls else {
        return Ok(UpStream::Plain(tcp));
    };
    let host = c.server_name.clone().unwrap_or_else(|| host_of(addr));
    let name =
        ServerName::try_from(host.clone()).map_err(|e| format!("TLS server name '{host}': {e}"))?;
    let s = tokio::time::timeout(timeout, c.inner.connect(name, tcp))
        .await
        .map_err(|_| format!("TLS handshake with {addr}: timed out"))?
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    Ok(UpStream::Tls(Box::new(s)))
}

/// The host part of `host:port` (`[v6]:port` too).
fn host_of(addr: &str) -> String {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_string();
    }
    addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string()
}

impl AsyncRead for UpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpStream::Plain(s) => s.is_write_vectored(),
            UpStream::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_of_addresses() {
        assert_eq!(super::host_of("127.0.0.1:6379"), "127.0.0.1");
        assert_eq!(super::host_of("[::1]:6379"), "::1");
        assert_eq!(super::host_of("redis.example:6380"), "redis.example");
    }
}

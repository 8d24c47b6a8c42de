//! The Redis serialization protocol: request parsing ([`parse`]) and reply encoding
//! ([`reply`]). Requests are always RESP2-shaped (clients send arrays of bulk strings or
//! inline lines); replies depend on the protocol the client chose with `HELLO`.

pub mod parse;
pub mod reply;

pub use parse::{Limits, Parsed, ProtocolError, RequestParser};
pub use reply::Reply;

//! The Redis serialization protocol: request parsing ([`parse`]) and reply encoding
//! ([`reply`]) as a server; reply parsing ([`value`]) as a client of upstream servers. Requests are always RESP2-shaped (clients send arrays of bulk strings or
//! inline lines); replies depend on the protocol the client chose with `HELLO`.

pub mod parse;
pub mod reply;
pub mod value;

pub use parse::{Limits, Parsed, ProtocolError, RequestParser};
pub use reply::Reply;

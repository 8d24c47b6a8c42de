//! Command argument parsing and execution: arbitrary requests (RESP or inline) run against a
//! fresh embedded engine. Every command gets a reply (but a successful SHUTDOWN, which
//! closes the connection as in Redis) and nothing panics.
//! AUTH and HELLO are skipped: a wrong password is answered after a deliberate delay, which
//! would only slow the fuzzer down.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sessiond::cmd::{self, ClientState, Flow};
use sessiond::config::Config;
use sessiond::engine::{Engine, EngineConfig};
use sessiond::resp::reply::{Proto, Reply};
use sessiond::resp::{Limits, Parsed, RequestParser};
use sessiond::server::Server;

thread_local! {
    /// One runtime for every input (building one per input would dominate the run time);
    /// the server and its engine are new for each input, so each input starts from the same
    /// state and a crash reproduces from its input alone.
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
}

fuzz_target!(|data: &[u8]| {
    let engine = Engine::new(EngineConfig {
        databases: 16,
        maxmemory: 0,
        policy: sessiond::engine::evict::Policy::NoEviction,
        active_expiry: false,
    });
    let server = Arc::new(Server::new(engine, Config::default()));
    let Some(handle) = server
        .clients
        .register("127.0.0.1:1".into(), "127.0.0.1:2".into(), 10, 0)
    else {
        return;
    };
    let mut state = ClientState::new(handle, true, true, server.settings.acl.default_user());
    let mut parser = RequestParser::new();
    let limits = Limits {
        max_bulk_len: 1 << 16,
        max_multibulk_len: 64,
    };
    let mut pos = 0;
    let mut out = bytes::BytesMut::new();
    RT.with(|rt| {
        rt.block_on(async {
            for _ in 0..32 {
                let Ok(Parsed::Command { consumed }) = parser.parse(data, pos, &limits, true)
                else {
                    break;
                };
                pos += consumed;
                let mut args = Vec::new();
                parser.args(data, &mut args);
                if args.is_empty() {
                    continue;
                }
                let name = args[0].to_ascii_lowercase();
                if name == b"auth" || name == b"hello" {
                    continue;
                }
                out.clear();
                let mut reply = Reply::new(&mut out, Proto::Resp2);
                let flow = cmd::execute(&server, &mut state, &args, &mut reply).await;
                if flow == Flow::Close {
                    // QUIT replies and closes; a successful SHUTDOWN closes without a reply,
                    // as Redis does. Nothing runs after either.
                    break;
                }
                assert!(
                    !out.is_empty(),
                    "no reply to {:?}",
                    String::from_utf8_lossy(&name)
                );
                state.proto = Proto::Resp2;
            }
        })
    });
});

//! The RESP request parser on arbitrary bytes, whole and split in two at every byte the
//! input chooses: the same commands (or the same protocol error) either way, never a panic,
//! and never an argument outside the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiond::resp::{Limits, Parsed, RequestParser};

/// Commands parsed from `chunks` arriving one after the other, as a connection reads them.
fn parse(chunks: &[&[u8]], limits: &Limits, authenticated: bool) -> (Vec<Vec<Vec<u8>>>, bool) {
    let mut p = RequestParser::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        let mut pos = 0;
        loop {
            match p.parse(&buf, pos, limits, authenticated) {
                Ok(Parsed::Command { consumed }) => {
                    assert!(consumed > 0 && pos + consumed <= buf.len());
                    pos += consumed;
                    let mut args = Vec::new();
                    p.args(&buf, &mut args);
                    out.push(args.iter().map(|a| a.to_vec()).collect());
                }
                Ok(Parsed::Incomplete) => break,
                Err(_) => return (out, true),
            }
        }
        buf.drain(..pos);
        if p.is_mid_command() {
            p.rebase(pos);
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_bulk_len: 1 << 20,
        max_multibulk_len: 1024,
    };
    let authenticated = split & 1 == 1;
    let whole = parse(&[data], &limits, authenticated);
    let at = (split as usize * data.len()) / 255;
    let (a, b) = data.split_at(at.min(data.len()));
    let parts = parse(&[a, b], &limits, authenticated);
    assert_eq!(whole, parts, "split at {at}");
});

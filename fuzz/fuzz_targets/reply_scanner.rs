//! The upstream reply scanner (how the gateway cuts replies apart without decoding them) on
//! arbitrary bytes: wherever the full decoder finds a reply, the scanner finds the same end;
//! it never panics or claims more bytes than there are. The scanner checks framing only
//! (lengths, counts, line ends), not the text of a simple reply or an integer: it may accept
//! `:hello` where the decoder refuses it. That is by design: the gateway copies upstream
//! replies through byte for byte, and framing is all it needs to know.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiond::resp::value::{decode, FrameScanner};

const MAX_BULK: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut scanner = FrameScanner::default();
    let mut at = 0;
    while at < data.len() {
        let scanned = scanner.next_frame(&data[at..], MAX_BULK);
        let decoded = decode(&data[at..], MAX_BULK);
        match (scanned, decoded) {
            (Ok(Some(n)), Ok(Some((_, m)))) => {
                assert_eq!(n, m, "scanner and decoder disagree at {at}");
                assert!(n > 0 && at + n <= data.len());
                at += n;
            }
            (Ok(None), Ok(None)) => break,
            (Err(_), Err(_)) => break,
            // Framed right, content the decoder refuses: go on after it.
            (Ok(Some(n)), Err(_)) => {
                assert!(n > 0 && at + n <= data.len());
                at += n;
            }
            (Ok(None), Err(_)) => break,
            (s, d) => panic!(
                "at {at}: scanner {s:?}, decoder {:?}",
                d.map(|v| v.map(|x| x.1))
            ),
        }
    }
});

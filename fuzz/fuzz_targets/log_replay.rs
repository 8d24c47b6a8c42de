//! Start-up replay of an arbitrary log image into the engine: an error or a torn tail, never
//! a panic, and the state it builds can be written as a snapshot and read back.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sessiond::engine::{Engine, EngineConfig};
use sessiond::persist::format::{read_image, Op, LOG_MAGIC, SNAPSHOT_MAGIC};

static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    Engine::new(EngineConfig {
        databases: 16,
        maxmemory: 0,
        policy: sessiond::engine::evict::Policy::NoEviction,
        active_expiry: false,
    })
});

fuzz_target!(|data: &[u8]| {
    let engine = &*ENGINE;
    let _ = engine.apply(&Op::FlushAll);
    let mut image = LOG_MAGIC.to_vec();
    image.extend_from_slice(data);
    let _ = read_image(&image, LOG_MAGIC, |op| engine.apply(&op));
    let mut snap = SNAPSHOT_MAGIC.to_vec();
    let records = engine
        .dump(0, &mut |b| {
            snap.extend_from_slice(b);
            Ok(())
        })
        .expect("dump to memory");
    let mut read = 0u64;
    read_image(&snap, SNAPSHOT_MAGIC, |op| {
        if matches!(op, Op::Set { .. }) {
            read += 1;
        }
        Ok(())
    })
    .expect("the snapshot reads back");
    assert_eq!(read, records);
});

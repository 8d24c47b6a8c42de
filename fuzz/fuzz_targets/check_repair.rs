//! `check-aof --fix` on arbitrary file images (the inputs start with a log's or a snapshot's
//! header often enough, from the seed corpus): the repaired image always checks clean,
//! keeps every valid frame, and loads without error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiond::persist::check::analyze;
use sessiond::persist::format::{read_image, Tail, LOG_MAGIC, SNAPSHOT_MAGIC};

fuzz_target!(|data: &[u8]| {
    let Ok((report, repaired)) = analyze(data, true) else {
        return;
    };
    let Some(fixed) = repaired else {
        assert!(report.ok());
        return;
    };
    let (again, none) = analyze(&fixed, true).expect("a repaired image has a valid header");
    assert!(again.ok(), "the repaired image still has damage: {again:?}");
    assert!(none.is_none());
    assert!(again.frames >= report.frames.min(1) || report.frames == 0);
    let magic = if fixed.starts_with(SNAPSHOT_MAGIC) {
        SNAPSHOT_MAGIC
    } else {
        LOG_MAGIC
    };
    let out = read_image(&fixed, magic, |_| Ok(())).expect("the repaired image reads");
    assert_eq!(out.tail, Tail::Clean);
});

//! The router's rules, with two embedded engines as the old and new stores.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::router::Router;
use super::stage::{Setting, Stage};
use crate::deployment::Deployment;
use crate::engine::{Engine, EngineConfig, Policy};
use crate::legacy::keymap::KeyMap;
use crate::store::{ExpireCondition, SetOptions, Store, Ttl, TtlChange};

const NOW: i64 = 1_800_000_000_000;

fn engine() -> Engine {
    Engine::new(EngineConfig {
        databases: 16,
        maxmemory: 0,
        policy: Policy::NoEviction,
        active_expiry: false,
    })
}

fn router(stage: Stage, percent: f64) -> Router<Engine, Engine> {
    let r = Router::new(
        engine(),
        engine(),
        KeyMap::default(),
        Setting::new(stage, percent).unwrap(),
    );
    // Every shadow read compared, so the counts are exact.
    r.shadow_sample
        .store(10_000, std::sync::atomic::Ordering::Relaxed);
    r
}

fn key(id: &str) -> Vec<u8> {
    format!("PHPREDIS_SESSION:{id}").into_bytes()
}

fn with_ttl(secs: i64) -> SetOptions {
    SetOptions {
        ttl: TtlChange::At(NOW + secs * 1000),
        ..SetOptions::plain()
    }
}

async fn get<S: Deployment>(s: &S, k: &[u8]) -> Option<Bytes> {
    s.get(0, k, NOW).await.unwrap()
}

#[tokio::test]
async fn off_and_complete_use_one_store_each() {
    let r = router(Stage::Off, 100.0);
    let k = key("a");
    r.set(0, &k, b"v", with_ttl(60), NOW).await.unwrap();
    assert_eq!(get(&r.old, &k).await.as_deref(), Some(&b"v"[..]));
    assert_eq!(get(&r.new, &k).await, None);
    r.set_setting(Setting::new(Stage::Complete, 100.0).unwrap());
    assert_eq!(get(&r, &k).await, None, "complete reads the new store only");
    r.set(0, &k, b"w", with_ttl(60), NOW).await.unwrap();
    assert_eq!(
        get(&r.old, &k).await.as_deref(),
        Some(&b"v"[..]),
        "old untouched"
    );
}

#[tokio::test]
async fn dualwrite_writes_both_and_deletes_and_ttls_reach_both() {
    let r = router(Stage::DualWrite, 100.0);
    let k = key("b");
    r.set(0, &k, b"v", with_ttl(60), NOW).await.unwrap();
    assert_eq!(get(&r.new, &k).await.as_deref(), Some(&b"v"[..]));
    assert_eq!(r.new.ttl(0, &k, NOW).await.unwrap(), Ttl::At(NOW + 60_000));
    assert!(r
        .expire_at(0, &k, NOW + 5_000, ExpireCondition::Always, NOW)
        .await
        .unwrap());
    assert_eq!(r.old.ttl(0, &k, NOW).await.unwrap(), Ttl::At(NOW + 5_000));
    assert_eq!(r.new.ttl(0, &k, NOW).await.unwrap(), Ttl::At(NOW + 5_000));
    assert_eq!(r.del(0, &[&k], NOW).await.unwrap(), 1);
    assert_eq!(get(&r.old, &k).await, None);
    assert_eq!(get(&r.new, &k).await, None);
}

#[tokio::test]
async fn shadow_serves_old_and_counts_differences() {
    let r = router(Stage::Shadow, 100.0);
    let (same, only_old, differs) = (key("s1"), key("s2"), key("s3"));
    r.set(0, &same, b"x", with_ttl(60), NOW).await.unwrap();
    r.old
        .set(0, &only_old, b"y", with_ttl(60), NOW)
        .await
        .unwrap();
    r.old
        .set(0, &differs, b"old", with_ttl(60), NOW)
        .await
        .unwrap();
    r.new
        .set(0, &differs, b"new", with_ttl(60), NOW)
        .await
        .unwrap();
    assert_eq!(get(&r, &same).await.as_deref(), Some(&b"x"[..]));
    assert_eq!(get(&r, &only_old).await.as_deref(), Some(&b"y"[..]));
    assert_eq!(get(&r, &differs).await.as_deref(), Some(&b"old"[..]));
    let c = &r.stats.compare;
    assert_eq!(c.matched.load(Ordering::Relaxed), 1);
    assert_eq!(c.missing_in_new.load(Ordering::Relaxed), 1);
    assert_eq!(c.mismatched.load(Ordering::Relaxed), 1);
    assert_eq!(get(&r.new, &only_old).await, None, "shadow never copies");
    let samples = r.stats.samples();
    assert_eq!(samples.len(), 2);
    // Samples never hold the session id or the value.
    for s in samples {
        assert!(!s.id_hash.contains("s2") && !s.id_hash.contains("s3"));
    }
}

#[tokio::test]
async fn live_and_rampdown_fall_back_and_copy_forward_with_the_remaining_ttl() {
    for stage in [Stage::Live, Stage::RampDown] {
        let r = router(stage, 100.0);
        let k = key("legacy");
        r.old.set(0, &k, b"data", with_ttl(90), NOW).await.unwrap();
        assert_eq!(
            get(&r, &k).await.as_deref(),
            Some(&b"data"[..]),
            "{stage}: not logged out"
        );
        assert_eq!(
            get(&r.new, &k).await.as_deref(),
            Some(&b"data"[..]),
            "{stage}: copied"
        );
        assert_eq!(r.new.ttl(0, &k, NOW).await.unwrap(), Ttl::At(NOW + 90_000));
        assert_eq!(r.stats.copied_forward.load(Ordering::Relaxed), 1);
        // A value written to the new store meanwhile is never overwritten by a copy.
        let k2 = key("raced");
        r.old
            .set(0, &k2, b"stale", with_ttl(90), NOW)
            .await
            .unwrap();
        r.new
            .set(0, &k2, b"fresh", with_ttl(90), NOW)
            .await
            .unwrap();
        assert_eq!(get(&r, &k2).await.as_deref(), Some(&b"fresh"[..]));
        // Writes go to the new store first and to the old one too.
        r.set(0, &k, b"changed", with_ttl(30), NOW).await.unwrap();
        assert_eq!(get(&r.old, &k).await.as_deref(), Some(&b"changed"[..]));
    }
}

#[tokio::test]
async fn stepping_back_any_number_of_stages_loses_nothing() {
    let r = router(Stage::RampDown, 100.0);
    let k = key("rb");
    r.set(0, &k, b"1", with_ttl(60), NOW).await.unwrap();
    r.append(0, &k, b"23", NOW).await.unwrap();
    r.incr_by(0, &key("counter"), 5, NOW).await.unwrap();
    // Back to off: the old store alone has everything written in rampdown.
    r.set_setting(Setting::new(Stage::Off, 100.0).unwrap());
    assert_eq!(get(&r, &k).await.as_deref(), Some(&b"123"[..]));
    assert_eq!(get(&r, &key("counter")).await.as_deref(), Some(&b"5"[..]));
    assert_eq!(r.ttl(0, &k, NOW).await.unwrap(), Ttl::At(NOW + 60_000));
}

#[tokio::test]
async fn the_percentage_splits_sessions_between_the_stage_and_the_one_before() {
    let r = router(Stage::Shadow, 50.0);
    let ids: Vec<Vec<u8>> = (0..400).map(|i| key(&format!("p{i}"))).collect();
    for k in &ids {
        r.old.set(0, k, b"v", with_ttl(60), NOW).await.unwrap();
    }
    for k in &ids {
        get(&r, k).await;
    }
    // Sessions in shadow were compared (and found missing in new); the rest, in
    // dualwrite, were not.
    let compared = r.stats.compare.missing_in_new.load(Ordering::Relaxed);
    assert!((140..=260).contains(&compared), "{compared} of 400 at 50%");
    r.set_setting(Setting::new(Stage::Shadow, 100.0).unwrap());
    for k in &ids {
        get(&r, k).await;
    }
    assert_eq!(
        r.stats.compare.missing_in_new.load(Ordering::Relaxed),
        compared + 400
    );
}

#[tokio::test]
async fn lock_release_and_conditional_writes_follow_the_authoritative_store() {
    let r = router(Stage::Live, 100.0);
    let lock = key("l_LOCK");
    let nx = SetOptions {
        condition: crate::store::SetCondition::IfAbsent,
        ..with_ttl(10)
    };
    assert!(r.set(0, &lock, b"me", nx, NOW).await.unwrap().written);
    assert!(!r.set(0, &lock, b"other", nx, NOW).await.unwrap().written);
    assert_eq!(get(&r.old, &lock).await.as_deref(), Some(&b"me"[..]));
    assert!(!r.del_if_equal(0, &lock, b"other", NOW).await.unwrap());
    assert!(r.del_if_equal(0, &lock, b"me", NOW).await.unwrap());
    assert_eq!(
        get(&r.old, &lock).await,
        None,
        "release reached the old store"
    );
    assert_eq!(get(&r.new, &lock).await, None);
}

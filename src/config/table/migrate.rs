//! The migration router (`migrate-*`): the two stores, the stage and its ramp, the guard
//! and the shadow sample.

use super::*;

pub(super) static ROWS: &[Def] = &[
    Def::new(
        "migrate-from",
        Text,
        "URL",
        "Migration: the store sessions are moving from: `embedded` or a Redis URL (as for \
         --upstream). With --migrate-to, sessiond serves through the migration router.",
        |c, v| {
            c.parts.migrate_from = text(v);
            Ok(())
        },
    )
    .secret(),
    Def::new(
        "migrate-to",
        Text,
        "URL",
        "Migration: the store sessions are moving to.",
        |c, v| {
            c.parts.migrate_to = text(v);
            Ok(())
        },
    )
    .secret(),
    Def::new(
        "migrate-stage",
        Text,
        "STAGE",
        "Migration stage at start: off, dualwrite, shadow, live, rampdown, complete. Default off.",
        |c, v| {
            let names = Stage::ALL.map(|s| s.name());
            c.parts.migrate_stage = Some(one_of(v, &names, Stage::parse)?);
            Ok(())
        },
    )
    .get(|r| {
        r.migration()
            .map(|m| m.setting().stage.to_string())
            .unwrap_or_default()
    })
    .mode(migrating)
    .check(|r, c| migration_setting(r, c).map(|_| ()))
    .live(apply_migration_setting),
    Def::new(
        "migrate-percent",
        Float,
        "PERCENT",
        "Share of sessions in the stage (the rest are in the stage before), 0-100. Default 100.",
        |c, v| {
            c.parts.migrate_percent = Some(float(v)?);
            Ok(())
        },
    )
    .get(|r| {
        r.migration()
            .map(|m| m.setting().percent().to_string())
            .unwrap_or_default()
    })
    .mode(migrating)
    .check(|r, c| migration_setting(r, c).map(|_| ()))
    .live(apply_migration_setting),
    Def::new(
        "migrate-guard",
        Text,
        "BOUNDS",
        "The guarded ramp: step the stage back by itself when the store serving it degrades, \
         e.g. `errors=1%,p99=20ms,window=30s` (either bound; window 1-60 s, default 30 s). \
         Never steps forward. Default off.",
        |c, v| {
            c.parts.migrate_guard = match v {
                "off" | "" => None,
                g => Some(GuardConfig::parse(g)?),
            };
            Ok(())
        },
    )
    .get(|r| {
        r.migration()
            .map(|m| m.guard().map_or_else(|| "off".to_string(), |g| g.render()))
            .unwrap_or_default()
    })
    .mode(migrating)
    .live(|r, c, by| {
        if let Some(m) = r.migration() {
            let render = |g: Option<GuardConfig>| g.map_or_else(|| "off".into(), |g| g.render());
            let before = render(m.guard());
            m.set_guard(c.parts.migrate_guard);
            let after = render(c.parts.migrate_guard);
            r.audit()
                .record(by.who, "migration guard", &before, &after, by.why);
        }
    }),
    Def::new(
        "migrate-shadow-sample",
        Float,
        "PERCENT",
        "Share of reads compared in the shadow and live stages, 0-100 (the others read only \
         the serving store). Default 10 (docs/BENCHMARKS.md, \"Migrations of every type\").",
        |c, v| {
            c.parts.migrate_shadow_sample =
                Some(crate::migrate::router::sample_basis_points(float(v)?)?);
            Ok(())
        },
    )
    .get(|r| {
        r.migration()
            .map(|m| (m.shadow_sample() as f64 / 100.0).to_string())
            .unwrap_or_default()
    })
    .mode(migrating)
    .live(|r, c, by| {
        if let (Some(m), Some(bp)) = (r.migration(), c.parts.migrate_shadow_sample) {
            let before = format!("{}%", m.shadow_sample() as f64 / 100.0);
            m.set_shadow_sample(bp);
            let after = format!("{}%", bp as f64 / 100.0);
            r.audit()
                .record(by.who, "migration shadow sample", &before, &after, by.why);
        }
    }),
    Def::new(
        "migrate-client-prefix",
        Text,
        "PREFIX",
        "What clients put before the session id. Default PHPREDIS_SESSION:",
        |c, v| {
            c.parts.migrate_client_prefix = Some(v.to_string());
            Ok(())
        },
    ),
    Def::new(
        "migrate-legacy-prefix",
        Text,
        "PREFIX",
        "What the legacy store puts before the session id. Default none.",
        |c, v| {
            c.parts.migrate_legacy_prefix = Some(v.to_string());
            Ok(())
        },
    ),
];

/// The stage and percentage a change asks for: the stage and percentage change together,
/// each defaulting to the running one.
fn migration_setting(r: &dyn Running, c: &Config) -> Result<Setting, String> {
    migrating(r)?;
    let current = r.migration().map(|m| m.setting()).ok_or("not migrating")?;
    Setting::new(
        c.parts.migrate_stage.unwrap_or(current.stage),
        c.parts.migrate_percent.unwrap_or(current.percent()),
    )
}

fn apply_migration_setting(r: &dyn Running, c: &Config, by: &By) {
    let (Ok(s), Some(m)) = (migration_setting(r, c), r.migration()) else {
        return;
    };
    let before = m.setting();
    m.set_setting(s);
    r.audit().record(
        by.who,
        "migration",
        &format!("{} {}%", before.stage, before.percent()),
        &format!("{} {}%", s.stage, s.percent()),
        by.why,
    );
}

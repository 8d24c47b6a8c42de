//! sessiond started from a TOML configuration file, with its admin API, so that a test can
//! rewrite the file and have it reloaded (`sessiond ctl reload` or SIGHUP).

use super::{free_port, sessiond, sessiond_bin, Proc, TempDir};

/// The admin token of every [`Reloadable`].
pub const TOKEN: &str = "reload-test-token";

pub struct Reloadable {
    pub proc: Proc,
    pub admin: String,
    file: std::path::PathBuf,
    _dir: TempDir,
}

/// Runs `sessiond ctl` against the admin API at `admin`: success, and stdout + stderr.
pub fn ctl(admin: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(sessiond_bin())
        .args(["ctl", "--admin", admin, "--token", TOKEN])
        .args(args)
        .output()
        .expect("run sessiond ctl");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

impl Reloadable {
    /// sessiond with `toml` as its `--config` file, the admin API on a free port, and `extra`
    /// flags.
    pub fn start(toml: &str, extra: &[&str]) -> Reloadable {
        let dir = TempDir::new("reloadable");
        let file = dir.path("sessiond.toml");
        std::fs::write(&file, toml).expect("write config");
        let admin = format!("127.0.0.1:{}", free_port());
        let file_arg = file.to_string_lossy().into_owned();
        let mut args = vec![
            "--config",
            &file_arg,
            "--admin-listen",
            &admin,
            "--admin-token",
            TOKEN,
        ];
        args.extend_from_slice(extra);
        let proc = sessiond(&args);
        Reloadable {
            proc,
            admin,
            file,
            _dir: dir,
        }
    }

    pub fn rewrite(&self, toml: &str) {
        std::fs::write(&self.file, toml).expect("rewrite config");
    }

    /// `sessiond ctl reload` (with `args`, e.g. `--json`).
    pub fn reload(&self, args: &[&str]) -> (bool, String) {
        let mut a = vec!["reload"];
        a.extend_from_slice(args);
        ctl(&self.admin, &a)
    }
}

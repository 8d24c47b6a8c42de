//! Access control lists, as Redis 7 has them: named users with passwords, the commands they
//! may run, and the keys and channels they may touch (`user.rs`); the users of a server
//! ([`Acl`]); refusals and failed logins (`log.rs`). The `ACL` command is `cmd/acl.rs`.
//!
//! Every mode checks the same way: `cmd::check_known` (embedded, gateway, migration) asks
//! [`user::check`] after authentication, a script's `redis.call` asks it with the script's
//! caller. A connection caches its user and the registry's version; a change to any user
//! (SETUSER, DELUSER, LOAD, `requirepass`) bumps the version, and the next command of every
//! connection takes the new rules, as in Redis, where a change applies to the connections
//! already authenticated as that user. Connections of a deleted user are closed.
//!
//! The `default` user is the one a connection starts as; `requirepass` is its password
//! (CONFIG SET requirepass sets it, an empty one makes it `nopass`), as in Redis. The
//! unrestricted default user costs one atomic load and one flag test per command.

pub mod log;
pub mod user;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use user::{Denied, User};

pub struct Acl {
    users: RwLock<BTreeMap<String, Arc<User>>>,
    version: AtomicU64,
    pub log: log::AclLog,
    /// `aclfile`: where ACL LOAD reads and ACL SAVE writes.
    pub file: Option<PathBuf>,
}

/// A user name Redis accepts: no spaces, no NUL.
pub fn valid_name(name: &[u8]) -> bool {
    !name.iter().any(|&c| c == b' ' || c == 0)
}

impl Acl {
    /// The `default` user with `requirepass` (none: `nopass`).
    pub fn new(requirepass: Option<&str>, file: Option<PathBuf>) -> Acl {
        let acl = Acl {
            users: RwLock::new(BTreeMap::new()),
            version: AtomicU64::new(1),
            log: log::AclLog::default(),
            file,
        };
        acl.put(default_with(requirepass));
        acl
    }

    /// Loads the ACL file at start; an error names the file and line.
    pub fn load_file_at_start(&self, requirepass: Option<&str>) -> Result<(), String> {
        let Some(path) = self.file.clone() else {
            return Ok(());
        };
        if !path.exists() {
            // Redis starts with an empty file's users (default only); ACL SAVE creates it.
            return Ok(());
        }
        let users = parse_file(&path, requirepass)?;
        self.replace_all(users);
        Ok(())
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<User>>> {
        self.users.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<User>>> {
        self.users.write().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, u: User) {
        self.write().insert(u.name.clone(), Arc::new(u));
        self.bump();
    }

    pub fn user(&self, name: &str) -> Option<Arc<User>> {
        self.read().get(name).cloned()
    }

    pub fn default_user(&self) -> Arc<User> {
        self.user("default")
            .unwrap_or_else(|| Arc::new(User::default_user()))
    }

    /// Whether a new connection is logged in as `default` without AUTH: the default user
    /// is on and has no password (Redis's rule; protected mode is on top of it).
    pub fn default_is_open(&self) -> bool {
        let d = self.default_user();
        d.enabled && d.nopass
    }

    /// The user a name and password log in as, if they match an enabled user.
    /// The digest comparison runs whether or not the user exists or is enabled, so the
    /// reply's timing does not tell which user names exist.
    pub fn authenticate(&self, name: &[u8], pass: &[u8]) -> Option<Arc<User>> {
        let found = std::str::from_utf8(name).ok().and_then(|n| self.user(n));
        let Some(u) = found else {
            let _ = User::new("").password_matches(pass);
            return None;
        };
        let ok = u.password_matches(pass);
        (ok && u.enabled).then_some(u)
    }

    /// `CONFIG SET requirepass`: the default user's password (empty: nopass).
    pub fn set_requirepass(&self, pw: Option<&str>) {
        let mut u = (*self.default_user()).clone();
        let rule = match pw.filter(|p| !p.is_empty()) {
            Some(p) => format!(">{p}"),
            None => "nopass".into(),
        };
        // resetpass and >pw / nopass cannot fail.
        let _ = u.apply("resetpass");
        let _ = u.apply(&rule);
        self.put(u);
    }

    /// `ACL SETUSER name rules…`: creates the user if new; all rules or none.
    pub fn setuser(&self, name: &[u8], rules: &[&[u8]]) -> Result<(), String> {
        if !valid_name(name) {
            return Err("ERR Usernames can't contain spaces or null characters".into());
        }
        let name = String::from_utf8_lossy(name).into_owned();
        let mut users = self.write();
        let mut u = users
            .get(&name)
            .map_or_else(|| User::new(&name), |u| (**u).clone());
        u.apply_all(rules)?;
        users.insert(name, Arc::new(u));
        drop(users);
        self.bump();
        Ok(())
    }

    /// `ACL DELUSER`: how many were deleted; the names deleted.
    pub fn deluser(&self, names: &[&[u8]]) -> Result<Vec<String>, String> {
        if names.iter().any(|n| *n == b"default") {
            return Err("ERR The 'default' user cannot be removed".into());
        }
        let mut gone = Vec::new();
        let mut users = self.write();
        for n in names {
            let n = String::from_utf8_lossy(n).into_owned();
            if users.remove(&n).is_some() {
                gone.push(n);
            }
        }
        drop(users);
        if !gone.is_empty() {
            self.bump();
        }
        Ok(gone)
    }

    pub fn users(&self) -> Vec<Arc<User>> {
        self.read().values().cloned().collect()
    }

    fn replace_all(&self, users: Vec<User>) {
        let mut map = self.write();
        map.clear();
        for u in users {
            map.insert(u.name.clone(), Arc::new(u));
        }
        map.entry("default".into())
            .or_insert_with(|| Arc::new(User::default_user()));
        drop(map);
        self.bump();
    }

    /// `ACL LOAD`: replaces every user with the file's, or changes nothing on an error.
    /// The users that no longer exist, for closing their connections.
    pub fn load(&self, requirepass: Option<&str>) -> Result<Vec<String>, String> {
        let path = self.file.clone().ok_or(NO_FILE)?;
        let users = parse_file(&path, requirepass)?;
        let before: Vec<String> = self.read().keys().cloned().collect();
        self.replace_all(users);
        let after = self.read();
        Ok(before
            .into_iter()
            .filter(|n| !after.contains_key(n))
            .collect())
    }

    /// `ACL SAVE`: writes every user to the file (temp file, fsync, rename).
    pub fn save(&self) -> Result<(), String> {
        let path = self.file.clone().ok_or(NO_FILE)?;
        let mut text = String::new();
        for u in self.users() {
            text.push_str(&u.describe());
            text.push('\n');
        }
        write_atomically(&path, text.as_bytes())
            .map_err(|e| format!("ERR There was an error trying to save the ACLs. Please check the server logs for more information ({e})"))
    }
}

const NO_FILE: &str = "ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.";

fn default_with(requirepass: Option<&str>) -> User {
    let mut u = User::default_user();
    if let Some(p) = requirepass.filter(|p| !p.is_empty()) {
        let _ = u.apply("resetpass");
        let _ = u.apply(&format!(">{p}"));
    }
    u
}

/// Parses an ACL file (Redis's format: `user <name> <rules…>` per line, `#` comments and
/// blank lines skipped). Every line is checked before anything is used. Without a `default`
/// line the default user is the built-in one with `requirepass`.
pub fn parse_file(path: &Path, requirepass: Option<&str>) -> Result<Vec<User>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "ERR Error loading ACLs, opening file '{}': {e}",
            path.display()
        )
    })?;
    let mut users: BTreeMap<String, User> = BTreeMap::new();
    for (no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |msg: &str| format!("ERR {}:{}: {msg}", path.display(), no + 1);
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        if words.first() != Some(&"user") || words.len() < 2 {
            return Err(at("should start with user keyword"));
        }
        let name = words[1];
        if users.contains_key(name) {
            return Err(at(&format!("Duplicate user '{name}' found")));
        }
        let mut u = User::new(name);
        let rules: Vec<&[u8]> = words[2..].iter().map(|w| w.as_bytes()).collect();
        u.apply_all(&rules)
            .map_err(|e| at(e.trim_start_matches("ERR ")))?;
        users.insert(name.to_string(), u);
    }
    if !users.contains_key("default") {
        users.insert("default".into(), default_with(requirepass));
    }
    Ok(users.into_values().collect())
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirepass_is_the_default_users_password() {
        let acl = Acl::new(Some("pw"), None);
        assert!(!acl.default_is_open());
        assert!(acl.authenticate(b"default", b"pw").is_some());
        assert!(acl.authenticate(b"default", b"no").is_none());
        acl.set_requirepass(None);
        assert!(acl.default_is_open());
    }

    #[test]
    fn a_failed_setuser_changes_nothing_and_disabled_users_cannot_log_in() {
        let acl = Acl::new(None, None);
        acl.setuser(b"app", &[b">pw", b"+get"]).expect("ok");
        assert!(acl.authenticate(b"app", b"pw").is_none(), "off");
        assert!(acl.setuser(b"app", &[b"on", b"+nosuch"]).is_err());
        assert!(acl.authenticate(b"app", b"pw").is_none(), "still off");
        acl.setuser(b"app", &[b"on"]).expect("ok");
        assert!(acl.authenticate(b"app", b"pw").is_some());
        assert!(acl.deluser(&[b"default"]).is_err());
        assert_eq!(acl.deluser(&[b"app", b"x"]).expect("ok"), vec!["app"]);
    }

    #[test]
    fn save_and_load_round_trip_and_a_bad_line_loads_nothing() {
        let dir = std::env::temp_dir().join(format!("sessiond-acl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("users.acl");
        let acl = Acl::new(None, Some(path.clone()));
        acl.setuser(b"app", &[b"on", b">pw", b"~s:*", b"+@read", b"-get", b"&c"])
            .expect("ok");
        acl.save().expect("save");
        let again = Acl::new(None, Some(path.clone()));
        again.load(None).expect("load");
        assert_eq!(
            again.user("app").expect("app").describe(),
            acl.user("app").expect("app").describe()
        );
        std::fs::write(&path, "user a on +get\nuser b +nosuch\n").expect("write");
        let err = again.load(None).expect_err("bad line");
        assert!(err.contains(":2:"), "{err}");
        assert!(again.user("app").is_some(), "nothing replaced");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

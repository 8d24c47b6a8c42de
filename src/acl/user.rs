//! One ACL user: what it may run, which keys and channels it may touch, how it proves who it
//! is, and the rules that say so (`ACL SETUSER`), as Redis 7 has them.
//!
//! **Commands** are a bitmap over the command table (`cmd/table.rs`: every command and
//! subcommand has an index), so a check is one bit test. `+@category` sets the bits of every
//! command whose table row lists the category (the table is Redis's own, so the categories
//! are too). `+cmd` on a container (CONFIG, CLIENT…) sets all its subcommands; `+cmd|sub`
//! one; `+cmd|arg` on a command without subcommands allows it with that first argument only
//! (Redis's first-arg rules, e.g. `+select|0`).
//!
//! **Describing** the rules (`ACL GETUSER`, `ACL LIST`, `ACL SAVE`): `+@all` or `-@all`, then
//! the command rules in the order given, each name kept once (a rule for a name replaces an
//! earlier one for it, and a rule for a command replaces earlier ones for its subcommands;
//! `+@all`/`-@all` start over). Replaying the description gives the same bitmap. Redis 7.0
//! instead rebuilds a description from the bitmap, walking its command dictionary in hash
//! order, so its text changes from run to run; Redis 7.2 and later keep the rules as given,
//! as here. Keys (`~`, `%R~`, `%W~`) and channels (`&`) print as Redis prints them.
//!
//! **Passwords** are kept as SHA-256 digests only (what `#<hash>` sets and `ACL GETUSER`
//! shows) and compared in constant time.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::cmd::table::{self, Spec};
use crate::util::glob::glob_match;

/// Redis's ACL categories, in its order (`ACL CAT`).
pub const CATEGORIES: [&str; 21] = [
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// A key pattern's permissions.
pub const READ: u8 = 1;
pub const WRITE: u8 = 2;

pub type Digest32 = [u8; 32];

pub fn sha256(data: &[u8]) -> Digest32 {
    Sha256::digest(data).into()
}

pub fn hex(d: &Digest32) -> String {
    let mut s = String::with_capacity(64);
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A `#`/`!` hash argument: exactly 64 lower-case hex digits.
fn parse_hex(s: &str) -> Option<Digest32> {
    if s.len() != 64 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

const UNKNOWN_NAME: &str = "Unknown command or category name in ACL";
const SYNTAX: &str = "Syntax error";

#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub enabled: bool,
    pub nopass: bool,
    /// `sanitize-payload` (true) or `skip-sanitize-payload` (false), if given: shown only.
    pub sanitize: Option<bool>,
    /// SHA-256 digests, in the order added.
    pub passwords: Vec<Digest32>,
    /// One bit per command table row.
    allowed: Vec<u64>,
    /// `+@all`: commands added to the table later are allowed too (what the description's
    /// base says).
    all_commands: bool,
    /// First-argument rules: table index → allowed first arguments (lower case).
    first_args: BTreeMap<usize, Vec<String>>,
    /// The command rules after the base, as given and compacted (see the module comment).
    rules: Vec<String>,
    pub all_keys: bool,
    /// Key patterns and their permissions, in the order added.
    pub keys: Vec<(String, u8)>,
    pub all_channels: bool,
    pub channels: Vec<String>,
}

impl User {
    /// A new user as `ACL SETUSER name` creates it: off, no password, no keys, no channels
    /// (Redis 7's `acl-pubsub-default resetchannels`), no commands.
    pub fn new(name: &str) -> User {
        User {
            name: name.to_string(),
            enabled: false,
            nopass: false,
            sanitize: None,
            passwords: Vec::new(),
            allowed: vec![0; words()],
            all_commands: false,
            first_args: BTreeMap::new(),
            rules: Vec::new(),
            all_keys: false,
            keys: Vec::new(),
            all_channels: false,
            channels: Vec::new(),
        }
    }

    /// Redis's `default` user at start: `on nopass ~* &* +@all`.
    pub fn default_user() -> User {
        let mut u = User::new("default");
        for rule in ["on", "nopass", "~*", "&*", "+@all"] {
            // These rules are fixed and valid.
            let _ = u.apply(rule);
        }
        u
    }

    /// Whether every command, key and channel is allowed: no check needed.
    pub fn unrestricted(&self) -> bool {
        self.all_commands
            && self.all_keys
            && self.all_channels
            && self.rules.is_empty()
            && self.first_args.is_empty()
    }

    /// Applies `ACL SETUSER` rules in order; on an error the user is left as it was and the
    /// error names the rule.
    pub fn apply_all(&mut self, rules: &[&[u8]]) -> Result<(), String> {
        let mut next = self.clone();
        for r in rules {
            let text = String::from_utf8_lossy(r);
            next.apply(&text)
                .map_err(|e| format!("ERR Error in ACL SETUSER modifier '{text}': {e}"))?;
        }
        *self = next;
        Ok(())
    }

    /// Applies one rule; the error is Redis's reason text.
    pub fn apply(&mut self, rule: &str) -> Result<(), String> {
        let lower = rule.to_ascii_lowercase();
        match lower.as_str() {
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "sanitize-payload" => self.sanitize = Some(true),
            "skip-sanitize-payload" => self.sanitize = Some(false),
            "nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            "resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            "reset" => {
                for r in ["resetpass", "resetkeys", "resetchannels", "off", "-@all"] {
                    self.apply(r)?;
                }
                self.sanitize = Some(true);
            }
            "allkeys" => self.set_all_keys(),
            "resetkeys" => {
                self.all_keys = false;
                self.keys.clear();
            }
            "allchannels" => {
                self.all_channels = true;
                self.channels.clear();
            }
            "resetchannels" => {
                self.all_channels = false;
                self.channels.clear();
            }
            "allcommands" => self.set_all_commands(true),
            "nocommands" => self.set_all_commands(false),
            _ => return self.apply_prefixed(rule, &lower),
        }
        Ok(())
    }

    fn apply_prefixed(&mut self, rule: &str, lower: &str) -> Result<(), String> {
        let Some(first) = rule.chars().next() else {
            return Err(SYNTAX.into());
        };
        let rest = &rule[first.len_utf8()..];
        match first {
            '>' => {
                self.add_password(sha256(rest.as_bytes()));
                Ok(())
            }
            '#' => {
                let d = parse_hex(rest).ok_or(
                    "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters",
                )?;
                self.add_password(d);
                Ok(())
            }
            '<' => self.remove_password(&sha256(rest.as_bytes())),
            '!' => {
                let d = parse_hex(rest).ok_or(
                    "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters",
                )?;
                self.remove_password(&d)
            }
            '~' => self.add_key_pattern(rest, READ | WRITE),
            '%' => {
                let (perms, pattern) = rest.split_once('~').ok_or(SYNTAX)?;
                let mut p = 0;
                for c in perms.chars() {
                    p |= match c.to_ascii_uppercase() {
                        'R' => READ,
                        'W' => WRITE,
                        _ => return Err(SYNTAX.into()),
                    };
                }
                if p == 0 {
                    return Err(SYNTAX.into());
                }
                self.add_key_pattern(pattern, p)
            }
            '&' => {
                if rest == "*" {
                    self.all_channels = true;
                    self.channels.clear();
                    return Ok(());
                }
                if self.all_channels {
                    return Err("Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels".into());
                }
                if !self.channels.iter().any(|c| c == rest) {
                    self.channels.push(rest.to_string());
                }
                Ok(())
            }
            '+' | '-' => {
                let allow = first == '+';
                let whole = self.apply_command_rule(allow, &lower[1..])?;
                if !lower[1..].eq("@all") {
                    self.push_rule(allow, &lower[1..], whole);
                    self.compact();
                }
                Ok(())
            }
            '(' => Err("Selectors are not supported by sessiond: give the user's keys and commands as root rules".into()),
            _ => Err(SYNTAX.into()),
        }
    }

    fn add_password(&mut self, d: Digest32) {
        self.nopass = false;
        if !self.passwords.contains(&d) {
            self.passwords.push(d);
        }
    }

    fn remove_password(&mut self, d: &Digest32) -> Result<(), String> {
        let before = self.passwords.len();
        self.passwords.retain(|p| p != d);
        if self.passwords.len() == before {
            return Err(
                "The password you are trying to remove from the user does not exist".into(),
            );
        }
        self.nopass = false;
        Ok(())
    }

    fn set_all_keys(&mut self) {
        self.all_keys = true;
        self.keys.clear();
    }

    fn add_key_pattern(&mut self, pattern: &str, perms: u8) -> Result<(), String> {
        if self.all_keys {
            return Err("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns".into());
        }
        if pattern == "*" && perms == READ | WRITE {
            self.set_all_keys();
            return Ok(());
        }
        match self.keys.iter_mut().find(|(p, _)| p == pattern) {
            Some((_, f)) => *f |= perms,
            None => self.keys.push((pattern.to_string(), perms)),
        }
        Ok(())
    }

    fn set_all_commands(&mut self, allow: bool) {
        let fill = if allow { u64::MAX } else { 0 };
        self.allowed.iter_mut().for_each(|w| *w = fill);
        self.all_commands = allow;
        self.first_args.clear();
        self.rules.clear();
    }

    /// `+name`/`-name` with `name` lower case: a category, a command, `cmd|sub` or `cmd|arg`.
    /// Sets the bits only (the caller records the rule); whether it names a whole command.
    fn apply_command_rule(&mut self, allow: bool, name: &str) -> Result<bool, String> {
        if let Some(cat) = name.strip_prefix('@') {
            if cat == "all" {
                self.set_all_commands(allow);
                return Ok(false);
            }
            if !CATEGORIES.contains(&cat) {
                return Err(UNKNOWN_NAME.into());
            }
            for spec in table::commands() {
                if spec.acl.contains(&cat) {
                    self.set_bit(spec.index, allow);
                    self.first_args.remove(&spec.index);
                }
            }
            return Ok(false);
        }
        let (cmd, sub) = match name.split_once('|') {
            Some((c, s)) => (c, Some(s)),
            None => (name, None),
        };
        let spec = table::lookup(cmd.as_bytes())
            .map(|i| &table::commands()[i])
            .ok_or(UNKNOWN_NAME)?;
        match sub {
            None => {
                self.set_command(spec, allow);
                return Ok(true);
            }
            Some(sub) if !spec.subcommands.is_empty() => {
                let s = spec
                    .subcommands
                    .iter()
                    .map(|&i| &table::commands()[i])
                    .find(|s| s.sub_name() == sub)
                    .ok_or(UNKNOWN_NAME)?;
                self.set_bit(s.index, allow);
            }
            // A first argument: only allowed, never denied (as Redis).
            Some(arg) if allow && !arg.is_empty() && !arg.contains('|') => {
                if !self.bit(spec.index) {
                    let args = self.first_args.entry(spec.index).or_default();
                    if !args.iter().any(|a| a == arg) {
                        args.push(arg.to_string());
                    }
                }
            }
            Some(_) => return Err(UNKNOWN_NAME.into()),
        }
        Ok(false)
    }

    /// Drops the recorded rules that change nothing: without each, replaying the base and
    /// the rest still gives the same permissions (so `+@read -get +get` reads `+@read`).
    /// Bounded: SETUSER is rare, and a user with very many rules is left as given.
    fn compact(&mut self) {
        if self.rules.len() > 128 {
            return;
        }
        let mut i = 0;
        while i < self.rules.len() {
            let mut trial = self.rules.clone();
            trial.remove(i);
            let mut u = User::new("");
            u.set_all_commands(self.all_commands);
            for r in &trial {
                // Each was valid when first applied.
                let _ = u.apply_command_rule(r.starts_with('+'), &r[1..]);
            }
            if u.allowed == self.allowed && u.first_args == self.first_args {
                self.rules = trial;
            } else {
                i += 1;
            }
        }
    }

    fn set_command(&mut self, spec: &Spec, allow: bool) {
        self.set_bit(spec.index, allow);
        self.first_args.remove(&spec.index);
        for &i in &spec.subcommands {
            self.set_bit(i, allow);
        }
    }

    /// Records a rule for the description: earlier rules for the same name go (and, for a
    /// command, those for its subcommands and first arguments).
    fn push_rule(&mut self, allow: bool, name: &str, whole_command: bool) {
        let prefix = format!("{name}|");
        self.rules.retain(|r| {
            let n = &r[1..];
            n != name && !(whole_command && n.starts_with(&prefix))
        });
        self.rules
            .push(format!("{}{name}", if allow { '+' } else { '-' }));
    }

    fn bit(&self, i: usize) -> bool {
        self.allowed
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn set_bit(&mut self, i: usize, on: bool) {
        if let Some(w) = self.allowed.get_mut(i / 64) {
            if on {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }

    /// Whether the user may run `spec` (the subcommand's row for a container) with `args`.
    pub fn may_run(&self, spec: &Spec, args: &[&[u8]]) -> bool {
        if self.bit(spec.index) {
            return true;
        }
        match (self.first_args.get(&spec.index), args.get(1)) {
            (Some(allowed), Some(first)) => allowed
                .iter()
                .any(|a| a.as_bytes().eq_ignore_ascii_case(first)),
            _ => false,
        }
    }

    /// Whether a key may be used with these permissions (`READ`, `WRITE`, both or none).
    pub fn may_use_key(&self, key: &[u8], needs: u8) -> bool {
        self.all_keys
            || self
                .keys
                .iter()
                .any(|(p, f)| f & needs == needs && glob_match(p.as_bytes(), key, false))
    }

    /// Whether a channel may be used; a pattern (PSUBSCRIBE) must equal one of the user's
    /// patterns, as in Redis.
    pub fn may_use_channel(&self, channel: &[u8], is_pattern: bool) -> bool {
        self.all_channels
            || self.channels.iter().any(|p| {
                if is_pattern {
                    p.as_bytes() == channel
                } else {
                    glob_match(p.as_bytes(), channel, false)
                }
            })
    }

    /// Constant-time check of a password against every digest.
    pub fn password_matches(&self, given: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let d = sha256(given);
        let mut ok = subtle::Choice::from(0);
        for p in &self.passwords {
            ok |= p.ct_eq(&d);
        }
        // A user without passwords still hashes and compares once.
        if self.passwords.is_empty() {
            let _ = [0u8; 32].ct_eq(&d);
        }
        self.nopass || bool::from(ok)
    }

    /// `ACL GETUSER`'s flags.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut f = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            f.push("nopass");
        }
        match self.sanitize {
            Some(true) => f.push("sanitize-payload"),
            Some(false) => f.push("skip-sanitize-payload"),
            None => {}
        }
        f
    }

    /// The command rules as `ACL GETUSER` shows them.
    pub fn describe_commands(&self) -> String {
        let mut s = String::from(if self.all_commands { "+@all" } else { "-@all" });
        for r in &self.rules {
            s.push(' ');
            s.push_str(r);
        }
        s
    }

    /// The key patterns as `ACL GETUSER` shows them.
    pub fn describe_keys(&self) -> String {
        if self.all_keys {
            return "~*".into();
        }
        let parts: Vec<String> = self
            .keys
            .iter()
            .map(|(p, f)| match *f {
                READ => format!("%R~{p}"),
                WRITE => format!("%W~{p}"),
                _ => format!("~{p}"),
            })
            .collect();
        parts.join(" ")
    }

    /// The channel patterns as `ACL GETUSER` shows them.
    pub fn describe_channels(&self) -> String {
        if self.all_channels {
            return "&*".into();
        }
        let parts: Vec<String> = self.channels.iter().map(|c| format!("&{c}")).collect();
        parts.join(" ")
    }

    /// The user as one `ACL LIST` line (and a line of an ACL file): rules that recreate it.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = vec![format!("user {}", self.name)];
        parts.extend(self.flags().iter().map(|f| f.to_string()));
        parts.extend(self.passwords.iter().map(|p| format!("#{}", hex(p))));
        let keys = self.describe_keys();
        if !keys.is_empty() {
            parts.push(keys);
        }
        if self.all_channels {
            parts.push("&*".into());
        } else {
            parts.push("resetchannels".into());
            let ch = self.describe_channels();
            if !ch.is_empty() {
                parts.push(ch);
            }
        }
        parts.push(self.describe_commands());
        parts.join(" ")
    }
}

/// A table this long in 64-bit words.
fn words() -> usize {
    table::commands().len().div_ceil(64)
}

/// Why a command is refused (`ACL DRYRUN`, `NOPERM`, `ACL LOG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The command (its table name, `parent|sub` for a subcommand).
    Command(&'static str),
    Key(Vec<u8>),
    Channel(Vec<u8>),
}

impl Denied {
    /// The `NOPERM` error a client gets (Redis 7.0's texts).
    pub fn error(&self) -> String {
        match self {
            Denied::Command(name) => {
                format!("NOPERM this user has no permissions to run the '{name}' command")
            }
            Denied::Key(_) => {
                "NOPERM this user has no permissions to access one of the keys used as arguments"
                    .into()
            }
            Denied::Channel(_) => "NOPERM this user has no permissions to access one of the channels used as arguments".into(),
        }
    }

    /// The error a queued command gets at EXEC when the user's rules changed since MULTI.
    pub fn changed_since_queued(&self) -> String {
        let reason = match self {
            Denied::Command(_) => "no permission to execute the command or subcommand",
            Denied::Key(_) => "no permission to touch the specified keys",
            Denied::Channel(_) => "no permission to access one of the channels used as arguments",
        };
        format!("NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. This command is no longer allowed for the following reason: {reason}")
    }

    /// The error a script's `redis.call` raises.
    pub fn script_error(&self) -> String {
        match self {
            Denied::Command(_) => {
                "ERR The user executing the script can't run this command or subcommand".into()
            }
            Denied::Key(_) => "ERR The user executing the script can't access at least one of the keys mentioned in the command arguments".into(),
            Denied::Channel(_) => "ERR The user executing the script can't publish to the channel mentioned in the command".into(),
        }
    }

    /// `ACL DRYRUN`'s answer.
    pub fn dryrun(&self) -> String {
        match self {
            Denied::Command(name) => {
                format!("This user has no permissions to run the '{name}' command")
            }
            Denied::Key(k) => format!(
                "This user has no permissions to access the '{}' key",
                String::from_utf8_lossy(k)
            ),
            Denied::Channel(c) => format!(
                "This user has no permissions to access the '{}' channel",
                String::from_utf8_lossy(c)
            ),
        }
    }

    /// `ACL LOG`'s reason and object.
    pub fn reason(&self) -> (&'static str, String) {
        match self {
            Denied::Command(name) => ("command", name.to_string()),
            Denied::Key(k) => ("key", String::from_utf8_lossy(k).into_owned()),
            Denied::Channel(c) => ("channel", String::from_utf8_lossy(c).into_owned()),
        }
    }
}

/// The channels a command names (PUBLISH, SUBSCRIBE…), and whether they are patterns.
fn channels_of<'a>(spec: &Spec, args: &[&'a [u8]]) -> (Vec<&'a [u8]>, bool) {
    match spec.name {
        "publish" | "spublish" => (args.get(1).into_iter().copied().collect(), false),
        "subscribe" | "ssubscribe" => (args[1..].to_vec(), false),
        "psubscribe" => (args[1..].to_vec(), true),
        _ => (Vec::new(), false),
    }
}

/// The permissions a command with `variable_flags` key specs needs, from its arguments (as
/// Redis's key-finding functions for them): SET reads only with GET; BITFIELD reads with a
/// GET operation and writes with SET or INCRBY.
fn variable_needs(name: &str, args: &[&[u8]]) -> Option<u8> {
    let has = |from: usize, w: &str| {
        args.iter()
            .skip(from)
            .any(|a| a.eq_ignore_ascii_case(w.as_bytes()))
    };
    match name {
        "set" => Some(if has(3, "get") { READ | WRITE } else { WRITE }),
        "bitfield" => {
            let mut needs = 0;
            if has(2, "get") {
                needs |= READ;
            }
            if has(2, "set") || has(2, "incrby") {
                needs |= WRITE;
            }
            Some(if needs == 0 { READ } else { needs })
        }
        _ => None,
    }
}

/// Checks a command against a user, in Redis's order: the command, its keys, its channels.
/// `spec` is the subcommand's row for a container command.
pub fn check(user: &User, spec: &Spec, args: &[&[u8]]) -> Result<(), Denied> {
    // AUTH, HELLO, QUIT, RESET…: every user may run them, as in Redis.
    if user.unrestricted() || spec.flags.has(table::Flags::NO_AUTH) {
        return Ok(());
    }
    if !user.may_run(spec, args) {
        return Err(Denied::Command(spec.name));
    }
    if !user.all_keys {
        let mut pos = Vec::new();
        for ks in &spec.key_specs {
            if ks.flags.contains(&"not_key") {
                continue;
            }
            let mut needs = 0;
            for f in &ks.flags {
                match *f {
                    "access" => needs |= READ,
                    "insert" | "delete" | "update" => needs |= WRITE,
                    _ => {}
                }
            }
            if ks.flags.contains(&"variable_flags") {
                needs = variable_needs(spec.name, args).unwrap_or(needs);
            }
            pos.clear();
            ks.positions(args, &mut pos);
            for &i in &pos {
                if !user.may_use_key(args[i], needs) {
                    return Err(Denied::Key(args[i].to_vec()));
                }
            }
        }
    }
    if !user.all_channels {
        let (channels, is_pattern) = channels_of(spec, args);
        for c in channels {
            if !user.may_use_channel(c, is_pattern) {
                return Err(Denied::Channel(c.to_vec()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(rules: &[&str]) -> User {
        let mut u = User::new("u");
        let r: Vec<&[u8]> = rules.iter().map(|s| s.as_bytes()).collect();
        u.apply_all(&r).expect("rules apply");
        u
    }

    fn spec(name: &str) -> &'static Spec {
        let i = table::lookup(name.as_bytes()).expect("known");
        &table::commands()[i]
    }

    #[test]
    fn categories_and_commands_set_bits_in_order() {
        let u = user(&["+@read", "-get"]);
        assert!(u.may_run(spec("hget"), &[]));
        assert!(!u.may_run(spec("get"), &[]));
        assert!(!u.may_run(spec("set"), &[]));
        assert_eq!(u.describe_commands(), "-@all +@read -get");
        let u = user(&["+@read", "-get", "+@read"]);
        assert!(u.may_run(spec("get"), &[]));
        assert_eq!(u.describe_commands(), "-@all +@read");
        let u = user(&["+@read", "-get", "+get", "-client|list"]);
        assert_eq!(u.describe_commands(), "-@all +@read");
        let u = user(&["+config|get", "+config"]);
        assert_eq!(u.describe_commands(), "-@all +config");
        let u = user(&["+@all", "-debug", "+@all"]);
        assert_eq!(u.describe_commands(), "+@all");
    }

    #[test]
    fn replaying_the_description_gives_the_same_permissions() {
        let u = user(&[
            "+@hash",
            "-hset",
            "+@string",
            "-@write",
            "+set",
            "+config|get",
        ]);
        let desc = u.describe_commands();
        let again = user(&desc.split(' ').collect::<Vec<_>>());
        assert_eq!(u.allowed, again.allowed);
    }

    #[test]
    fn key_patterns_merge_and_allkeys_refuses_more() {
        let u = user(&["%R~a", "%W~a", "~b", "~b"]);
        assert_eq!(u.describe_keys(), "~a ~b");
        let mut u = user(&["~a", "allkeys"]);
        assert_eq!(u.describe_keys(), "~*");
        assert!(u.apply_all(&[b"~c"]).is_err());
        let u = user(&["%R~ro:*"]);
        assert!(u.may_use_key(b"ro:1", READ));
        assert!(!u.may_use_key(b"ro:1", WRITE));
    }

    #[test]
    fn passwords_are_digests_compared_whole() {
        let u = user(&[">secret"]);
        assert!(u.password_matches(b"secret"));
        assert!(!u.password_matches(b"secre"));
        assert_eq!(u.passwords[0], sha256(b"secret"));
        let mut u = user(&["nopass"]);
        assert!(u.password_matches(b"anything"));
        assert!(u.apply_all(&[b"<x"]).is_err());
        assert!(u.nopass, "a failed SETUSER changes nothing");
    }
}

//! Client keys and legacy session ids.
//!
//! Session handlers put a prefix in front of the session id (`PHPREDIS_SESSION:<id>` for
//! phpredis, `sess:<id>` for connect-redis); legacy stores keep the bare id (a MySQL
//! `sessions.id` column, a PHP `sess_<id>` file) or another prefix. A `KeyMap` strips the
//! client prefix and adds the legacy one, and back. The session id (the key without the client
//! prefix) is also what the ramp hashes, so a session and its lock key each land in a fixed
//! stage whichever store holds them.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMap {
    /// What clients put before the session id.
    pub client_prefix: Vec<u8>,
    /// What the legacy store puts before it.
    pub legacy_prefix: Vec<u8>,
}

impl Default for KeyMap {
    fn default() -> Self {
        KeyMap {
            client_prefix: b"PHPREDIS_SESSION:".to_vec(),
            legacy_prefix: Vec::new(),
        }
    }
}

impl KeyMap {
    /// The session id in a client key: the key without the client prefix, or the whole key
    /// when it does not carry the prefix.
    pub fn session_id<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        key.strip_prefix(self.client_prefix.as_slice())
            .unwrap_or(key)
    }

    /// The legacy store's name for a client key, if it maps to one.
    pub fn to_legacy(&self, key: &[u8]) -> Option<Vec<u8>> {
        let id = key.strip_prefix(self.client_prefix.as_slice())?;
        let mut out = self.legacy_prefix.clone();
        out.extend_from_slice(id);
        Some(out)
    }

    /// The client key for a legacy name, if it maps to one.
    pub fn to_client(&self, legacy: &[u8]) -> Option<Vec<u8>> {
        let id = legacy.strip_prefix(self.legacy_prefix.as_slice())?;
        let mut out = self.client_prefix.clone();
        out.extend_from_slice(id);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let m = KeyMap {
            client_prefix: b"sess:".to_vec(),
            legacy_prefix: b"sess_".to_vec(),
        };
        assert_eq!(m.to_legacy(b"sess:abc").as_deref(), Some(&b"sess_abc"[..]));
        assert_eq!(m.to_client(b"sess_abc").as_deref(), Some(&b"sess:abc"[..]));
        assert_eq!(m.to_legacy(b"other:abc"), None);
        assert_eq!(m.to_client(b"x"), None);
        assert_eq!(m.session_id(b"sess:abc"), b"abc");
        assert_eq!(m.session_id(b"plain"), b"plain");
        let d = KeyMap::default();
        assert_eq!(
            d.to_legacy(b"PHPREDIS_SESSION:42").as_deref(),
            Some(&b"42"[..])
        );
    }
}

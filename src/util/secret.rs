//! Secrets: random bytes from the operating system's CSPRNG, and files only their owner
//! can read that are never written through a symlink.

use std::io::{Read, Write};
use std::path::Path;

/// `n` bytes from the kernel's CSPRNG (`/dev/urandom`, which never blocks once the system
/// has booted). `fastrand` is fast but predictable, fine for sampling, not for a token.
pub fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

/// A random token: `bytes` bytes of CSPRNG output as lowercase hex.
pub fn random_token(bytes: usize) -> std::io::Result<String> {
    Ok(random_bytes(bytes)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Writes `text` to `path` with mode 0600, whatever was there: the text goes to a new
/// temporary file (created exclusively, not following symlinks) that is renamed over `path`.
/// A pre-existing file keeps neither its mode nor its content, and a symlink planted at
/// `path` is replaced, never followed.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = std::path::PathBuf::from(format!("{}.tmp", path.display()));
    // A leftover (or planted) temporary name is removed, never followed: remove_file on a
    // symlink removes the link.
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc_o_nofollow())
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)
}

/// `O_NOFOLLOW` on Linux (the same value on every Linux architecture but alpha/parisc/sparc).
const fn libc_o_nofollow() -> i32 {
    0o400000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tokens_differ_and_private_files_replace_symlinks_and_modes() {
        let a = random_token(32).unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, random_token(32).unwrap());
        let dir = std::env::temp_dir().join(format!("sessiond-secret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("elsewhere");
        std::fs::write(&target, "untouched").unwrap();
        let path = dir.join("admin.token");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        write_private(&path, "secret").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, "again").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let _ = std::fs::remove_dir_all(dir);
    }
}

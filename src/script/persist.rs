//! FUNCTION libraries survive a restart: their code is kept in `<dir>/functions.dump` (the
//! FUNCTION DUMP payload, so the file can also be fed to a Redis with FUNCTION RESTORE),
//! rewritten through a temporary file, fsynced and renamed after every change, and loaded
//! (compiled and checked) before the listeners open. EVAL's script cache is not kept, as in
//! Redis: clients send EVAL on NOSCRIPT.

use std::io::Write;
use std::path::Path;

use super::{function, Scripts};

pub const FILE: &str = "functions.dump";

/// Writes the libraries to `dir`, atomically and durably.
pub fn save(scripts: &Scripts, dir: &Path) -> std::io::Result<()> {
    let payload = {
        let libs = scripts.libraries();
        let codes: Vec<&[u8]> = libs.libs.values().map(|l| &l.code[..]).collect();
        crate::util::rdb::dump_functions(&codes)
    };
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(&payload)?;
            f.sync_all()
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Loads the libraries saved in `dir`; returns how many. A file that cannot be read back is
/// an error (it is never overwritten by an empty set).
pub fn load(scripts: &Scripts, dir: &Path) -> Result<usize, String> {
    let path = dir.join(FILE);
    let payload = match std::fs::read(&path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let codes = crate::util::rdb::restore_functions(&payload)
        .map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    let mut n = 0;
    for code in codes {
        let lib = function::validate(scripts, &code)
            .map_err(|e| format!("{}: a library does not load: {e}", path.display()))?;
        scripts
            .libraries_mut()
            .insert(lib, false)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        n += 1;
    }
    scripts.bump();
    Ok(n)
}

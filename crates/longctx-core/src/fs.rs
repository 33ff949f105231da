//! File-system helpers the stages that write run directories share.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to a temporary file beside `path` (`path` with the extension `tmp`), syncs
/// it and renames it over `path`: a reader (or a run killed mid-write) sees the old file or
/// the new one, never half of one. Errors name the file (fs-err).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs_err::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs_err::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        super::write_atomic(&path, b"one").unwrap();
        super::write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!dir.path().join("state.tmp").exists());
    }
}

//! A SQLite database is patient data at rest: its folder is created for its
//! owner only (`0700`) and the file `0600` before SQLite opens it (SQLite
//! gives the `-wal` and `-shm` files the database file's mode). Modes an
//! operator chose are not changed, but one that lets others read is warned
//! about at every start.

use std::path::{Path, PathBuf};

use super::StoreError;

/// Create the folder and the empty file, owner-only, if missing; then warn
/// about any of the folder, the file, its `-wal` and `-shm` that others
/// may read.
pub fn prepare(file: &Path) -> Result<(), StoreError> {
    if file.as_os_str().is_empty() || file.as_os_str() == ":memory:" {
        return Ok(());
    }
    let folder = file.parent().filter(|f| !f.as_os_str().is_empty());
    if let Some(folder) = folder {
        create_folder(folder)
            .map_err(|e| StoreError::Open(format!("cannot create {}: {e}", folder.display())))?;
    }
    create_file(file)
        .map_err(|e| StoreError::Open(format!("cannot create {}: {e}", file.display())))?;
    let mut paths: Vec<PathBuf> = folder.map(Path::to_path_buf).into_iter().collect();
    for suffix in ["", "-wal", "-shm"] {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        paths.push(PathBuf::from(name));
    }
    for path in paths {
        if let Some(mode) = open_to_others(&path) {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "the database's files hold patient data but others than their owner may read this: \
                 make it owner-only (chmod 700 for the folder, 600 for files)"
            );
        }
    }
    Ok(())
}

#[cfg(unix)]
fn create_folder(folder: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder)
}

#[cfg(not(unix))]
fn create_folder(folder: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(folder)
}

/// An empty file is what SQLite takes for a new database.
fn create_file(file: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The permission bits of `path` if it exists and grants anything to its
/// group or others.
#[cfg(unix)]
fn open_to_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn open_to_others(_path: &Path) -> Option<u32> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn new_files_are_owner_only_and_wider_existing_ones_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data/deeper/signpost.db");
        prepare(&file).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(file.parent().unwrap()), 0o700);
        assert_eq!(mode(&dir.path().join("data")), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(open_to_others(&file), None);

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(open_to_others(&file), Some(0o644));
        // An existing file keeps the mode its operator gave it.
        prepare(&file).unwrap();
        assert_eq!(mode(&file), 0o644);
    }
}

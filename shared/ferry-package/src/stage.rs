//! Opening a push/diff source: a store directory as is, or a package file
//! staged once into a store beside it (1x the package, never more), so that
//! reruns resume from the staged blobs.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ferry_store::Store;

use crate::collect::PresentCheck;
use crate::detect::{detect, PackageFormat};
use crate::error::PackageError;
use crate::estimate;
use crate::import::{import_package, ImportOptions, ImportReport};

/// A source ready to read from.
pub struct Source {
    /// The store holding the images.
    pub store: Store,
    /// The staging import, when the source was a package.
    pub staged: Option<ImportReport>,
    /// Where the store is.
    pub path: PathBuf,
}

/// The default staging directory for a package: `PACKAGE.ferry-store` beside it.
pub fn default_staging_dir(package: &Path) -> PathBuf {
    let mut name = package
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".ferry-store");
    package.with_file_name(name)
}

/// Opens `source`: a directory holding an OCI layout is used in place (for
/// writing when possible, so upload sessions can be journaled); a package is
/// staged into `staging` after checking there is room. `announce` is told what
/// is about to happen (disk needed and available) before any bulk write.
pub fn open_source(
    source: &Path,
    staging: Option<&Path>,
    threads: u32,
    progress: Arc<AtomicU64>,
    announce: &dyn Fn(&str),
) -> Result<Source, PackageError> {
    let format = detect(source)?;
    if format == PackageFormat::LayoutDir && source.join("oci-layout").is_file() {
        let store = match Store::open_for_write(source) {
            Ok(s) => s,
            Err(_) => Store::open_read_only(source)?,
        };
        return Ok(Source {
            store,
            staged: None,
            path: source.to_path_buf(),
        });
    }
    let dir = staging.map_or_else(|| default_staging_dir(source), Path::to_path_buf);
    std::fs::create_dir_all(&dir).map_err(|e| PackageError::Io {
        path: dir.clone(),
        source: e,
    })?;
    let store = Store::open_for_write(&dir)?;
    let identity = package_identity(source);
    if let Some(id) = &identity {
        if store.read_state_file(STAGED_MARKER).as_deref() == Some(id.as_bytes()) {
            let walk = store.walk_index()?;
            if walk.problems.is_empty() && !walk.nodes.is_empty() {
                announce(&format!(
                    "{} is already staged in {} (same file, every image complete): not reading it again",
                    source.display(),
                    dir.display()
                ));
                return Ok(Source {
                    store,
                    staged: None,
                    path: dir,
                });
            }
        }
    }
    let unpacked = estimate::unpacked_size(source, format);
    let available = ferry_store::space::available_bytes(&dir).unwrap_or(u64::MAX);
    announce(&format!(
        "staging {} into {} (needs about {} MB; {} MB available; kept for reruns)",
        source.display(),
        dir.display(),
        unpacked / 1_000_000,
        available / 1_000_000
    ));
    estimate::check_space(&dir, unpacked).map_err(|e| PackageError::Io {
        path: dir.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let report = import_package(
        source,
        &store,
        &ImportOptions {
            progress,
            threads,
            present_check: PresentCheck::default(),
        },
    )?;
    if let Some(id) = identity {
        store.write_state_file(STAGED_MARKER, id.as_bytes())?;
    }
    Ok(Source {
        store,
        staged: Some(report),
        path: dir,
    })
}

/// State file naming the package a staging store was completely filled from.
const STAGED_MARKER: &str = "staged-from";

/// Identity of a package file: canonical path, size, modification time, inode.
/// A package that changes in any of these is staged again.
fn package_identity(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let canonical = std::fs::canonicalize(path).ok()?;
    let m = std::fs::metadata(&canonical).ok()?;
    Some(format!(
        "{}\n{}\n{}.{}\n{}\n",
        canonical.display(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino()
    ))
}

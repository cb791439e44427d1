//! Free-space queries (statvfs) for early "not enough space" errors.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::StoreError;

/// Bytes available to an unprivileged writer on the filesystem holding `path`.
#[allow(unsafe_code)]
pub fn available_bytes(path: &Path) -> Result<u64, StoreError> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| StoreError::io("statvfs", path, std::io::Error::other(e)))?;
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` is a properly
    // sized, zero-initialised out-parameter that statvfs fills in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(StoreError::io(
            "statvfs",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reports_some_space_for_temp_dir() {
        let dir = tempfile::tempdir().unwrap();
        assert!(super::available_bytes(dir.path()).unwrap() > 0);
        assert!(super::available_bytes(&dir.path().join("missing")).is_err());
    }
}

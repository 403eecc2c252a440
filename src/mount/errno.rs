//! The one mapping from view answers to errnos: an exhaustive match, so a new `ViewError`
//! variant cannot be forgotten here.

use fuser::Errno;

use crate::reassembly::view::ViewError;

/// The errno the kernel gets for a view error.
pub(crate) fn errno(err: &ViewError) -> Errno {
    match err {
        ViewError::UnknownNode { .. } => Errno::ESTALE,
        ViewError::NoSuchEntry { .. } => Errno::ENOENT,
        ViewError::NotADirectory { .. } => Errno::ENOTDIR,
        ViewError::IsADirectory { .. } => Errno::EISDIR,
        ViewError::NotASymlink { .. } => Errno::EINVAL,
        ViewError::NoSuchXattr { .. } => Errno::ENODATA,
        ViewError::BufferTooSmall { .. } => Errno::ERANGE,
        ViewError::Damaged { .. } | ViewError::Catalog(_) => Errno::EIO,
    }
}

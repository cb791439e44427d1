//! ferry-package (being written).

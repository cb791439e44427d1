//! ferry-e2e (being written).

//! ferry-cli (being written).

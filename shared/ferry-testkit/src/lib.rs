//! ferry-testkit (stub, being written).

//! ferry (being written).
fn main() {}

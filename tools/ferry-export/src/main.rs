//! ferry-export (being written).
fn main() {}

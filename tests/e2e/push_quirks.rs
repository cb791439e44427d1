//! ferry-push against real distribution v2.8 quirks and failure modes.

#[test]
fn placeholder_replaced_by_real_tests() {}

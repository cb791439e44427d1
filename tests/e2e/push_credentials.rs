//! Where ferry-push finds credentials, end to end against a real registry.

#[test]
fn placeholder_replaced_by_real_tests() {}

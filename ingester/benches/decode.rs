//! Decode micro-benchmark (filled in with the decoders).
fn main() {}

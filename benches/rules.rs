//! Rule engine throughput (being written).
fn main() {}

//! The `ringkv` command-line tool.

fn main() {}

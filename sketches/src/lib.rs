//! Mergeable sketches for ringkv.

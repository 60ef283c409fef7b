//! The `shopmind.v1` wire contract.
//!
//! The Rust code in `src/gen/` is generated from `proto/shopmind/v1/*.proto` at the repository
//! root and committed, so building needs no `protoc`. `tests/codegen.rs` regenerates it with the
//! pure-Rust `protox` compiler and fails when the committed code has drifted (run
//! `SHOPMIND_REGENERATE=1 cargo test -p shopmind-proto --test codegen` to update it), and
//! `tests/field_numbers.rs` fails when a field number in `proto/fields.lock` changed.

/// Generated messages, enums, and the `Gateway` client and server.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    include!("gen/shopmind.v1.rs");
}

/// The encoded `FileDescriptorSet` of the contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("gen/shopmind.v1.bin");

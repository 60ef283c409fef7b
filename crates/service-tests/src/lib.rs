//! Tests across services, and nothing else: this crate has no code of its own.
//!
//! A service crate (`services/*`) never depends on another, not even for its tests (the
//! `manifests` test checks it); a test that needs several services started together (the
//! inference service next to the feature service, the gateway in front of inference, the
//! notification service with the features it reads, the feature settings every service reads
//! with) lives here, in the one test binary `tests/services/main.rs` (a module per service, so the
//! services are linked once). The root `tests/` holds the end-to-end tests of the `shopmind`
//! binary.

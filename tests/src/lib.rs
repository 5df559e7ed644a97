//! End-to-end and cross-crate suites live in `tests/it`; this library is empty.

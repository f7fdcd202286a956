//! Shared nothing.

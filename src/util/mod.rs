//! Process-level pieces that are not a stage of the pipeline: the memory allocator every
//! process of the binary runs on, and the ingest benchmark's baseline server.

pub mod alloc;
pub mod ceiling;

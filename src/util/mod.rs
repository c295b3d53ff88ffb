//! Process-level pieces that are not a stage of the pipeline: the memory allocator every
//! process of the binary runs on, the ingest benchmark's baseline server, the log and trace export.

pub mod alloc;
pub mod ceiling;
pub mod traces;

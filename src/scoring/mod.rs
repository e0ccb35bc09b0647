//! Scoring: weights and group caps from `scores/`, applied to the symbols the
//! rules emit, giving a [`ScanReport`]. Pure and synchronous; no I/O besides
//! loading `scores/` at start-up and on reload.

pub mod engine;
pub mod report;
pub mod scores;

pub use engine::{Engine, ExternalSymbol, GTUBE};
pub use report::{
    AttachmentSummary, MessageSummary, ScanReport, ScanSkipped, SymbolResult, Timings,
};

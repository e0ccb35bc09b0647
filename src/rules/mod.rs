//! Rules: pure, synchronous checks that turn a parsed message and its envelope
//! into named symbols with evidence. No I/O; facts that need the network (SPF,
//! counters, account state) arrive as data.

pub mod identity;

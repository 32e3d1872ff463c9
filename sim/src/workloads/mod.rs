//! The workloads: what the instances are asked to do. Each runs the real `atlas` code (the
//! intake function, the guarded rate limiter, the leader loop, the reissue use case) on the real
//! assembly of an instance (`runtime::wiring::assemble`, see `world`) and records what it saw;
//! only the "dialogue" the chat workload drives is its own (append the update to the
//! conversation state), so that checkers can tell exactly what each handler read.

pub mod chat;
pub mod leader;
pub mod limits;
pub mod purchases;
pub mod reissue;

//! The simulation harness: a deterministic turmoil world in which several instances run the real
//! `atlas` code (intake, coordination, leader loop) against a simulated Redis that runs the
//! project's own Lua scripts, with faults injected on a schedule. Nothing here re-implements the
//! bot's logic: the sim supplies the ports (clock, randomness, the Redis stream), the world, the
//! workloads that drive the bot, and the checkers that judge what happened.

pub mod checkers;
pub mod clock;
pub mod dialer;
pub mod history;
pub mod redis_host;
pub mod runner;
pub mod scenario;
pub mod store_host;
pub mod vpn;
pub mod workloads;
pub mod world;

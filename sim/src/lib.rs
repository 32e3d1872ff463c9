//! The simulation harness: a deterministic turmoil world in which several instances run the real
//! `atlas` code — each assembled by the bot's own composition root — against a simulated Redis
//! that runs the project's own Lua scripts and a model of the store, with faults injected on a
//! schedule. Nothing here re-implements the bot's logic: the sim supplies the adapters (clock,
//! randomness, the Redis stream, the store model, the VPN panel), the world, the workloads that
//! drive the bot, and the checkers that judge what happened.
//!
//! The modules form layers, each importing only those below it: `scenario`, `clock`, `history`
//! at the bottom; then `instance`, `seed`, the hosts (`redis_host`, `store_host`, `vpn`,
//! `dialer`) and `world`; then `faults` (what every run shares), `workloads`, `checkers` and the
//! whole-bot world (`bot`); then `runner`, which runs any scenario, and `fuzz`, which generates and shrinks them, and
//! `report`, which draws one run as an HTML page.

pub mod bot;
pub mod bot_api;
pub mod checkers;
pub mod clock;
pub mod crypto;
pub mod dialer;
pub mod fakes;
pub mod faults;
pub mod fuzz;
pub mod history;
pub mod instance;
pub mod logs;
pub mod messenger;
pub mod net;
pub mod redis_host;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod seed;
pub mod store_host;
pub mod vpn;
pub mod workloads;
pub mod world;

//! The sim Redis host: a RESP2 server (framing by the `redis-protocol` crate) that answers the
//! real redis-rs client, handshake included, runs the commands the project uses and the
//! project's own Lua scripts (EVAL, EVALSHA with NOSCRIPT, SCRIPT LOAD), with key expiry on
//! simulated time. Its state lives outside the host's software, so a restart can keep the data
//! (persistence) or lose it; the script cache is always lost on restart, as in Redis.

pub mod data;
pub mod lua;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::extend_encode;
use redis_protocol::resp2::types::OwnedFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::clock::{SIM_EPOCH_UNIX_SECS, sim_now};
use crate::history::REPORT_TARGET;
use data::{Keyspace, Reply};

pub const REDIS_PORT: u16 = 6379;

/// The largest request accepted, so a broken client cannot grow a buffer without end.
const REQUEST_BYTES_MAX: usize = 1 << 20;

#[derive(Default)]
pub struct RedisState {
    pub keyspace: Keyspace,
    scripts: BTreeMap<String, String>,
    engine: lua::ScriptEngine,
    /// Commands served, by name (EVALSHA counts as one: the client's round trips).
    pub calls: BTreeMap<String, u64>,
    /// Restarts so far, and the clock skew of this host.
    pub restarts: u32,
    pub skew_ms: i64,
    /// Who took each role's leader lease last, as Redis saw it (what an operator reads with
    /// `GET` and `CLIENT LIST`): the faults that crash "the leader of a role" pick their instance
    /// by it.
    leases: BTreeMap<String, LeaseTaken>,
    /// A guard switched off in every script this Redis runs (`Scenario::broken_guard`).
    pub broken_guard: Option<crate::scenario::BrokenGuard>,
}

/// A leader lease as it was set: its key, the host whose connection set it, its token, when.
#[derive(Clone)]
struct LeaseTaken {
    key: Vec<u8>,
    host: String,
    token: Vec<u8>,
    since: Duration,
}

/// The role named by a leader lease key (`<base>:{leader:<role>}:lease`).
fn lease_role(key: &[u8]) -> Option<String> {
    let key = std::str::from_utf8(key).ok()?;
    let role = key.strip_suffix("}:lease")?.rsplit_once("{leader:")?.1;
    Some(role.to_owned())
}

impl RedisState {
    /// Redis restarted: the script cache is gone; the data too unless it was persisted.
    pub fn restart(&mut self, lose_data: bool) {
        self.scripts.clear();
        self.engine = lua::ScriptEngine::default();
        self.restarts += 1;
        if lose_data {
            self.keyspace.flush();
        }
    }

    /// The host whose lease on `role` Redis holds now, and since when it holds it (the process
    /// that took it may have died since: its lease outlives it until its TTL).
    pub fn leader_of(&mut self, role: &str, now: Duration) -> Option<(String, Duration)> {
        let LeaseTaken { key, host, token, since } = self.leases.get(role)?.clone();
        (self.keyspace.string(&key, now)? == token).then_some((host, since))
    }

    /// Notes who set a leader lease, after a script whose first key is one.
    fn note_lease(&mut self, args: &[Vec<u8>], peer: &str, now: Duration) {
        let is_script =
            args.first().is_some_and(|c| c.eq_ignore_ascii_case(b"EVALSHA") || c.eq_ignore_ascii_case(b"EVAL"));
        let Some(key) = args.get(3).filter(|_| is_script) else { return };
        let Some(role) = lease_role(key) else { return };
        let Some(token) = self.keyspace.string(key, now) else { return };
        if self.leases.get(&role).is_none_or(|taken| taken.token != token) {
            self.leases.insert(role, LeaseTaken { key: key.clone(), host: peer.to_owned(), token, since: now });
        }
    }

    fn time(&self, now: Duration) -> (u64, u64) {
        let micros = (SIM_EPOCH_UNIX_SECS as i128 * 1_000_000 + now.as_micros() as i128 + self.skew_ms as i128 * 1000)
            .max(0) as u64;
        (micros / 1_000_000, micros % 1_000_000)
    }

    fn script_sha(source: &str) -> String {
        sha1_smol::Sha1::from(source).digest().to_string()
    }

    fn eval(&mut self, sha: &str, source: &str, rest: &[Vec<u8>], now: Duration) -> Reply {
        let Some(numkeys) = rest.first().and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok()) else {
            return Reply::err("ERR value is not an integer or out of range");
        };
        if numkeys > rest.len() - 1 {
            return Reply::err("ERR Number of keys can't be greater than number of args");
        }
        let (keys, args) = rest[1..].split_at(numkeys);
        let time = self.time(now);
        match self.broken_guard {
            Some(guard) => self.engine.run(&mut self.keyspace, now, time, sha, &guard.apply(source), keys, args),
            None => self.engine.run(&mut self.keyspace, now, time, sha, source, keys, args),
        }
    }

    /// Serves one command.
    pub fn execute(&mut self, args: &[Vec<u8>], now: Duration) -> Reply {
        let name = args.first().map(|n| String::from_utf8_lossy(n).to_ascii_uppercase()).unwrap_or_default();
        *self.calls.entry(name.clone()).or_default() += 1;
        let text = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).into_owned());
        match name.as_str() {
            // The handshake of redis-rs: AUTH, SELECT and CLIENT SETINFO, pipelined.
            "AUTH" | "SELECT" => Reply::ok(),
            "CLIENT" => Reply::ok(),
            "EVAL" => match text(1) {
                Some(source) => {
                    let sha = Self::script_sha(&source);
                    self.scripts.insert(sha.clone(), source.clone());
                    self.eval(&sha, &source, &args[2..], now)
                }
                None => Reply::err("ERR wrong number of arguments for 'eval' command"),
            },
            "EVALSHA" => match text(1)
                .map(|sha| sha.to_ascii_lowercase())
                .and_then(|sha| Some((self.scripts.get(&sha).cloned()?, sha)))
            {
                Some((source, sha)) => self.eval(&sha, &source, &args[2..], now),
                None => Reply::err("NOSCRIPT No matching script. Please use EVAL."),
            },
            "SCRIPT" => match (text(1).map(|s| s.to_ascii_uppercase()).as_deref(), text(2)) {
                (Some("LOAD"), Some(source)) => {
                    let sha = Self::script_sha(&source);
                    self.scripts.insert(sha.clone(), source);
                    Reply::Bulk(Some(sha.into_bytes()))
                }
                (Some("FLUSH"), _) => {
                    self.scripts.clear();
                    self.engine = lua::ScriptEngine::default();
                    Reply::ok()
                }
                (Some("EXISTS"), _) => Reply::Array(
                    args[2..]
                        .iter()
                        .map(|s| {
                            Reply::Int(i64::from(
                                self.scripts.contains_key(&String::from_utf8_lossy(s).to_ascii_lowercase()),
                            ))
                        })
                        .collect(),
                ),
                _ => Reply::err("ERR unknown SCRIPT subcommand"),
            },
            _ => {
                let time = self.time(now);
                self.keyspace.execute(args, now, time)
            }
        }
    }
}

/// A reply as the host sends it (RESP2 bytes).
pub fn encode(reply: Reply) -> Vec<u8> {
    let mut out = BytesMut::new();
    extend_encode(&mut out, &frame(reply).into_bytes_frame(), false).expect("a reply encodes");
    out.to_vec()
}

fn frame(reply: Reply) -> OwnedFrame {
    match reply {
        Reply::Status(s) => OwnedFrame::SimpleString(s.into_bytes()),
        Reply::Error(e) => OwnedFrame::Error(e),
        Reply::Int(n) => OwnedFrame::Integer(n),
        Reply::Bulk(None) => OwnedFrame::Null,
        Reply::Bulk(Some(b)) => OwnedFrame::BulkString(b),
        Reply::Array(items) => OwnedFrame::Array(items.into_iter().map(frame).collect()),
    }
}

fn command(frame: OwnedFrame) -> Option<Vec<Vec<u8>>> {
    match frame {
        OwnedFrame::Array(items) => items
            .into_iter()
            .map(|f| match f {
                OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => Some(b),
                OwnedFrame::Integer(n) => Some(n.to_string().into_bytes()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

async fn connection(
    state: Rc<RefCell<RedisState>>,
    mut stream: turmoil::net::TcpStream,
    peer: String,
) -> std::io::Result<()> {
    let mut input = BytesMut::with_capacity(4096);
    let mut output = BytesMut::with_capacity(4096);
    loop {
        if stream.read_buf(&mut input).await? == 0 {
            return Ok(());
        }
        if input.len() > REQUEST_BYTES_MAX {
            return Ok(());
        }
        // Every complete command in the buffer is served before replying: pipelined requests
        // (the handshake) get their replies in order, in one write.
        while let Some((request, used)) =
            decode(&input).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?
        {
            let _ = input.split_to(used);
            let reply = match command(request) {
                Some(args) => {
                    let mut state = state.borrow_mut();
                    let reply = state.execute(&args, sim_now());
                    state.note_lease(&args, &peer, sim_now());
                    if tracing::enabled!(target: REPORT_TARGET, tracing::Level::DEBUG) {
                        tracing::debug!(target: REPORT_TARGET, peer = %peer, "{} -> {}", in_words(&args), reply_in_words(&reply));
                    }
                    reply
                }
                None => Reply::err("ERR Protocol error: expected an array of bulk strings"),
            };
            extend_encode(&mut output, &frame(reply).into_bytes_frame(), false)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
    }
}

/// A command as the report shows it: its name and arguments, long ones cut (a script's SHA, a
/// conversation's JSON).
fn in_words(args: &[Vec<u8>]) -> String {
    let words: Vec<String> = args
        .iter()
        .map(|a| {
            let text = String::from_utf8_lossy(a);
            if text.chars().count() > 40 {
                format!("{}…", text.chars().take(40).collect::<String>())
            } else {
                text.into()
            }
        })
        .collect();
    words.join(" ")
}

fn reply_in_words(reply: &Reply) -> String {
    match reply {
        Reply::Int(n) => n.to_string(),
        Reply::Bulk(None) => "(nil)".into(),
        Reply::Bulk(Some(b)) => in_words(std::slice::from_ref(b)),
        Reply::Status(s) => s.clone(),
        Reply::Error(e) => format!("ERROR {e}"),
        Reply::Array(items) => format!("[{}]", items.iter().map(reply_in_words).collect::<Vec<_>>().join(", ")),
    }
}

/// The host's software: accept connections and serve each.
pub async fn serve(state: Rc<RefCell<RedisState>>) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, REDIS_PORT)).await?;
    loop {
        let (stream, from) = listener.accept().await?;
        let peer = turmoil::reverse_lookup(from.ip()).unwrap_or_default();
        tokio::task::spawn_local(connection(state.clone(), stream, peer));
    }
}

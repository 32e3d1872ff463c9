//! The sim Redis's keyspace: strings, hashes and sorted sets with expiry on simulated time, and
//! the commands the project uses. Everything is ordered (BTreeMap), so a run replays exactly.

use std::collections::BTreeMap;
use std::time::Duration;

/// A command's reply, as RESP2 will carry it.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Status("OK".into())
    }

    pub fn err(message: impl Into<String>) -> Reply {
        Reply::Error(message.into())
    }

    fn bulk(bytes: &[u8]) -> Reply {
        Reply::Bulk(Some(bytes.to_vec()))
    }
}

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";

#[derive(Clone, Debug)]
enum Value {
    Str(Vec<u8>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    /// member -> score
    ZSet(BTreeMap<Vec<u8>, f64>),
}

#[derive(Clone, Debug)]
struct Entry {
    value: Value,
    expires_at: Option<Duration>,
}

/// One logical database. `now` is the host's simulated time since the sim's epoch.
#[derive(Default, Debug)]
pub struct Keyspace {
    entries: BTreeMap<Vec<u8>, Entry>,
}

const NOT_FLOAT: &str = "ERR value is not a valid float";

fn int_arg(arg: &[u8]) -> Result<i64, Reply> {
    std::str::from_utf8(arg).ok().and_then(|s| s.parse().ok()).ok_or_else(|| Reply::err(NOT_INTEGER))
}

/// A ZADD score, as Redis reads one: C's `strtod` over the whole text, refusing an empty text,
/// leading space, NaN, and a number out of range (overflowing to infinity, or underflowing to
/// zero). Rust's parser takes the same decimal and infinity spellings, not `strtod`'s
/// hexadecimal ones (which the project never sends).
fn score_arg(arg: &[u8]) -> Result<f64, Reply> {
    let refused = || Reply::err(NOT_FLOAT);
    let text = std::str::from_utf8(arg).map_err(|_| refused())?;
    let score: f64 = text.parse().map_err(|_| refused())?;
    let lower = text.to_ascii_lowercase();
    let mantissa = lower.split('e').next().unwrap_or_default();
    let overflowed = score.is_infinite() && !lower.contains("inf");
    let underflowed = score == 0.0 && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b));
    if score.is_nan() || overflowed || underflowed { Err(refused()) } else { Ok(score) }
}

/// A ZREMRANGEBYSCORE bound, as Redis reads one (more leniently than a score): `strtod` with
/// leading space allowed, an empty text read as 0, a number out of range as its limit; only
/// trailing text and NaN are refused.
fn bound_arg(arg: &[u8]) -> Result<f64, Reply> {
    let refused = || Reply::err("ERR min or max is not a float");
    let text = std::str::from_utf8(arg).map_err(|_| refused())?;
    if text.is_empty() {
        return Ok(0.0);
    }
    let number = text.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    number.parse::<f64>().ok().filter(|bound| !bound.is_nan()).ok_or_else(refused)
}

/// Formats a score as Redis does (integers without a fraction).
fn format_score(score: f64) -> Vec<u8> {
    if score.fract() == 0.0 && score.abs() < 1e17 { format!("{}", score as i64) } else { format!("{score}") }
        .into_bytes()
}

/// `*` and `?` glob matching, enough for `KEYS prefix:*`.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..])),
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

impl Keyspace {
    pub fn flush(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self, now: Duration) -> usize {
        self.entries.values().filter(|e| e.expires_at.is_none_or(|at| at > now)).count()
    }

    pub fn is_empty(&self, now: Duration) -> bool {
        self.len(now) == 0
    }

    /// The string at `key`, if it is alive (what `GET` answers).
    pub fn string(&mut self, key: &[u8], now: Duration) -> Option<Vec<u8>> {
        match &self.live(key, now)?.value {
            Value::Str(v) => Some(v.clone()),
            _ => None,
        }
    }

    fn live(&mut self, key: &[u8], now: Duration) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|e| e.expires_at.is_some_and(|at| at <= now)) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    /// Runs one command (not EVAL/SCRIPT, which the host handles). `args[0]` is the name.
    pub fn execute(&mut self, args: &[Vec<u8>], now: Duration, time: (u64, u64)) -> Reply {
        let Some(name) = args.first() else {
            return Reply::err("ERR empty command");
        };
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        match declared(&name, args.len()) {
            Err(Refusal::Unknown) => return unknown_command(args),
            Err(Refusal::Arity) => return arity_error(&name),
            Ok(()) => {}
        }
        let a = &args[1..];
        let result = match (name.as_str(), a.len()) {
            ("PING", 0) => Ok(Reply::Status("PONG".into())),
            ("PING", 1) => Ok(Reply::bulk(&a[0])),
            ("TIME", 0) => Ok(Reply::Array(vec![
                Reply::bulk(time.0.to_string().as_bytes()),
                Reply::bulk(time.1.to_string().as_bytes()),
            ])),
            ("EXISTS", n) if n >= 1 => Ok(Reply::Int(a.iter().filter(|k| self.live(k, now).is_some()).count() as i64)),
            ("DEL", n) if n >= 1 => Ok(Reply::Int(
                a.iter().filter(|k| self.live(k, now).is_some() && self.entries.remove(*k).is_some()).count() as i64,
            )),
            ("PTTL", 1) => Ok(Reply::Int(match self.live(&a[0], now) {
                None => -2,
                Some(Entry { expires_at: None, .. }) => -1,
                Some(Entry { expires_at: Some(at), .. }) => (*at - now).as_millis() as i64,
            })),
            ("PEXPIRE", 2) => self.pexpire(&a[0], &a[1], now),
            ("GET", 1) => match self.live(&a[0], now) {
                None => Ok(Reply::Bulk(None)),
                Some(Entry { value: Value::Str(v), .. }) => Ok(Reply::bulk(v)),
                Some(_) => Err(Reply::err(WRONGTYPE)),
            },
            ("SET", n) if n >= 2 => self.set(a, now, time),
            ("INCR", 1) => self.incr(&a[0], now),
            ("HSET", n) if n >= 3 && n % 2 == 1 => self.hset(a, now),
            ("HGET", 2) => self.with_hash(&a[0], now, |h| Reply::Bulk(h.get(&a[1]).cloned())),
            ("HMGET", n) if n >= 2 => self.with_hash(&a[0], now, |h| {
                Reply::Array(a[1..].iter().map(|f| Reply::Bulk(h.get(f).cloned())).collect())
            }),
            ("HDEL", n) if n >= 2 => self.hdel(a, now),
            ("HGETALL", 1) => self.with_hash(&a[0], now, |h| {
                Reply::Array(h.iter().flat_map(|(f, v)| [Reply::bulk(f), Reply::bulk(v)]).collect())
            }),
            ("ZADD", n) if n % 2 == 1 => self.zadd(a, now),
            // A score without its member.
            ("ZADD", _) => Err(Reply::err(SYNTAX)),
            ("ZCARD", 1) => self.with_zset(&a[0], now, |z| Reply::Int(z.len() as i64)),
            ("ZSCORE", 2) => self.with_zset(&a[0], now, |z| Reply::Bulk(z.get(&a[1]).map(|s| format_score(*s)))),
            ("ZRANGE", 3 | 4) => self.zrange(a, now),
            ("ZREMRANGEBYSCORE", 3) => self.zremrangebyscore(a, now),
            ("KEYS", 1) => {
                let keys: Vec<Vec<u8>> = self.entries.keys().filter(|k| glob(&a[0], k)).cloned().collect();
                Ok(Reply::Array(
                    keys.into_iter().filter(|k| self.live(k, now).is_some()).map(|k| Reply::Bulk(Some(k))).collect(),
                ))
            }
            ("DBSIZE", 0) => Ok(Reply::Int(self.len(now) as i64)),
            ("FLUSHALL" | "FLUSHDB", _) => {
                self.flush();
                Ok(Reply::ok())
            }
            // Within the declared arity, but a form the command refuses by its count (HSET's
            // field without a value) or one the model does not serve.
            _ => Err(arity_error(&name)),
        };
        result.unwrap_or_else(|e| e)
    }

    fn pexpire(&mut self, key: &[u8], ms: &[u8], now: Duration) -> Result<Reply, Reply> {
        let ms = int_arg(ms)?;
        let Some(entry) = self.live(key, now) else {
            return Ok(Reply::Int(0));
        };
        if ms <= 0 {
            self.entries.remove(key);
        } else {
            entry.expires_at = Some(now + Duration::from_millis(ms as u64));
        }
        Ok(Reply::Int(1))
    }

    fn set(&mut self, a: &[Vec<u8>], now: Duration, time: (u64, u64)) -> Result<Reply, Reply> {
        // As Redis: every option is read before a lifetime's number is; NX with XX, or EX with
        // PX, is a syntax error (the same one twice is not: the last lifetime counts).
        let (mut lifetime, mut nx, mut xx): (Option<(&[u8], &Vec<u8>)>, bool, bool) = (None, false, false);
        let mut options = a[2..].iter();
        while let Some(option) = options.next() {
            match option.to_ascii_uppercase().as_slice() {
                b"NX" if !xx => nx = true,
                b"XX" if !nx => xx = true,
                unit @ (b"PX" | b"EX") if lifetime.is_none_or(|(set, _)| set == unit) => {
                    let unit: &[u8] = if unit == b"PX" { b"PX" } else { b"EX" };
                    lifetime = Some((unit, options.next().ok_or(Reply::err(SYNTAX))?));
                }
                _ => return Err(Reply::err(SYNTAX)),
            }
        }
        let expires_at = match lifetime {
            None => None,
            Some((unit, value)) => {
                let n = int_arg(value)?;
                // Refused as Redis refuses it: not positive, or past what its clock (Unix ms
                // in an i64) can hold.
                let ms = if unit == b"PX" { Some(n) } else { n.checked_mul(1000) };
                let unix_ms = i64::try_from(time.0.saturating_mul(1000)).unwrap_or(i64::MAX);
                match ms.filter(|ms| *ms > 0 && ms.checked_add(unix_ms).is_some()) {
                    Some(ms) => Some(now + Duration::from_millis(ms as u64)),
                    None => return Err(Reply::err("ERR invalid expire time in 'set' command")),
                }
            }
        };
        let exists = self.live(&a[0], now).is_some();
        if (nx && exists) || (xx && !exists) {
            return Ok(Reply::Bulk(None));
        }
        self.entries.insert(a[0].clone(), Entry { value: Value::Str(a[1].clone()), expires_at });
        Ok(Reply::ok())
    }

    fn incr(&mut self, key: &[u8], now: Duration) -> Result<Reply, Reply> {
        let (current, expires_at) = match self.live(key, now) {
            None => (0, None),
            Some(Entry { value: Value::Str(v), expires_at }) => (int_arg(v)?, *expires_at),
            Some(_) => return Err(Reply::err(WRONGTYPE)),
        };
        let next = current.checked_add(1).ok_or(Reply::err(NOT_INTEGER))?;
        self.entries.insert(key.to_vec(), Entry { value: Value::Str(next.to_string().into_bytes()), expires_at });
        Ok(Reply::Int(next))
    }

    fn with_hash(
        &mut self,
        key: &[u8],
        now: Duration,
        f: impl FnOnce(&BTreeMap<Vec<u8>, Vec<u8>>) -> Reply,
    ) -> Result<Reply, Reply> {
        match self.live(key, now) {
            None => Ok(f(&BTreeMap::new())),
            Some(Entry { value: Value::Hash(h), .. }) => Ok(f(h)),
            Some(_) => Err(Reply::err(WRONGTYPE)),
        }
    }

    fn hash_mut(&mut self, key: &[u8], now: Duration) -> Result<&mut BTreeMap<Vec<u8>, Vec<u8>>, Reply> {
        if self.live(key, now).is_none() {
            self.entries.insert(key.to_vec(), Entry { value: Value::Hash(BTreeMap::new()), expires_at: None });
        }
        match self.entries.get_mut(key) {
            Some(Entry { value: Value::Hash(h), .. }) => Ok(h),
            _ => Err(Reply::err(WRONGTYPE)),
        }
    }

    fn hset(&mut self, a: &[Vec<u8>], now: Duration) -> Result<Reply, Reply> {
        let hash = self.hash_mut(&a[0], now)?;
        let added = a[1..].chunks(2).filter(|pair| hash.insert(pair[0].clone(), pair[1].clone()).is_none()).count();
        Ok(Reply::Int(added as i64))
    }

    fn hdel(&mut self, a: &[Vec<u8>], now: Duration) -> Result<Reply, Reply> {
        let removed = match self.live(&a[0], now) {
            None => 0,
            Some(Entry { value: Value::Hash(h), .. }) => a[1..].iter().filter(|f| h.remove(*f).is_some()).count(),
            Some(_) => return Err(Reply::err(WRONGTYPE)),
        };
        if matches!(self.entries.get(&a[0]), Some(Entry { value: Value::Hash(h), .. }) if h.is_empty()) {
            self.entries.remove(&a[0]);
        }
        Ok(Reply::Int(removed as i64))
    }

    fn with_zset(
        &mut self,
        key: &[u8],
        now: Duration,
        f: impl FnOnce(&BTreeMap<Vec<u8>, f64>) -> Reply,
    ) -> Result<Reply, Reply> {
        match self.live(key, now) {
            None => Ok(f(&BTreeMap::new())),
            Some(Entry { value: Value::ZSet(z), .. }) => Ok(f(z)),
            Some(_) => Err(Reply::err(WRONGTYPE)),
        }
    }

    fn zadd(&mut self, a: &[Vec<u8>], now: Duration) -> Result<Reply, Reply> {
        let pairs: Vec<(f64, Vec<u8>)> =
            a[1..].chunks(2).map(|p| Ok((score_arg(&p[0])?, p[1].clone()))).collect::<Result<_, Reply>>()?;
        if self.live(&a[0], now).is_none() {
            self.entries.insert(a[0].clone(), Entry { value: Value::ZSet(BTreeMap::new()), expires_at: None });
        }
        let Some(Entry { value: Value::ZSet(z), .. }) = self.entries.get_mut(&a[0]) else {
            return Err(Reply::err(WRONGTYPE));
        };
        Ok(Reply::Int(
            pairs.into_iter().filter(|(score, member)| z.insert(member.clone(), *score).is_none()).count() as i64
        ))
    }

    /// Members ordered as Redis orders them: by score, then by member bytes.
    fn ordered(z: &BTreeMap<Vec<u8>, f64>) -> Vec<(&Vec<u8>, f64)> {
        let mut members: Vec<(&Vec<u8>, f64)> = z.iter().map(|(m, s)| (m, *s)).collect();
        members.sort_by(|x, y| x.1.total_cmp(&y.1).then_with(|| x.0.cmp(y.0)));
        members
    }

    fn zrange(&mut self, a: &[Vec<u8>], now: Duration) -> Result<Reply, Reply> {
        let (start, stop) = (int_arg(&a[1])?, int_arg(&a[2])?);
        let with_scores = match a.get(3) {
            None => false,
            Some(o) if o.eq_ignore_ascii_case(b"WITHSCORES") => true,
            Some(_) => return Err(Reply::err(SYNTAX)),
        };
        self.with_zset(&a[0], now, |z| {
            let members = Self::ordered(z);
            let n = members.len() as i64;
            let clamp = |i: i64| if i < 0 { (n + i).max(0) } else { i };
            let (from, to) = (clamp(start), clamp(stop).min(n - 1));
            let mut out = Vec::new();
            if from <= to {
                for (member, score) in &members[from as usize..=to as usize] {
                    out.push(Reply::bulk(member));
                    if with_scores {
                        out.push(Reply::Bulk(Some(format_score(*score))));
                    }
                }
            }
            Reply::Array(out)
        })
    }

    fn zremrangebyscore(&mut self, a: &[Vec<u8>], now: Duration) -> Result<Reply, Reply> {
        // A bound is inclusive, or exclusive when it starts with `(`.
        let bound = |b: &[u8]| {
            let (exclusive, number) = match b.strip_prefix(b"(") {
                Some(rest) => (true, rest),
                None => (false, b),
            };
            Ok::<_, Reply>((bound_arg(number)?, exclusive))
        };
        let ((min, min_open), (max, max_open)) = (bound(&a[1])?, bound(&a[2])?);
        let within = |score: f64| {
            (if min_open { score > min } else { score >= min }) && (if max_open { score < max } else { score <= max })
        };
        let removed = match self.live(&a[0], now) {
            None => 0,
            Some(Entry { value: Value::ZSet(z), .. }) => {
                let before = z.len();
                z.retain(|_, score| !within(*score));
                before - z.len()
            }
            Some(_) => return Err(Reply::err(WRONGTYPE)),
        };
        if matches!(self.entries.get(&a[0]), Some(Entry { value: Value::ZSet(z), .. }) if z.is_empty()) {
            self.entries.remove(&a[0]);
        }
        Ok(Reply::Int(removed as i64))
    }
}

/// The commands the model serves, with the arity Redis declares for each (the name counted; a
/// negative arity is a minimum).
const COMMANDS: &[(&str, i32)] = &[
    ("PING", -1),
    ("TIME", 1),
    ("EXISTS", -2),
    ("DEL", -2),
    ("PTTL", 2),
    ("PEXPIRE", -3),
    ("GET", 2),
    ("SET", -3),
    ("INCR", 2),
    ("HSET", -4),
    ("HGET", 3),
    ("HMGET", -3),
    ("HDEL", -3),
    ("HGETALL", 2),
    ("ZADD", -4),
    ("ZCARD", 2),
    ("ZSCORE", 3),
    ("ZRANGE", -4),
    ("ZREMRANGEBYSCORE", 4),
    ("KEYS", 2),
    ("DBSIZE", 1),
    ("FLUSHALL", -1),
    ("FLUSHDB", -1),
];

/// Why Redis refuses a command before running it.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    /// Outside the command's declared arity.
    Arity,
}

/// Whether Redis would run command `name` (upper case) with `count` words, its name counted: a
/// known command within its declared arity.
pub fn declared(name: &str, count: usize) -> Result<(), Refusal> {
    let (_, arity) = COMMANDS.iter().find(|(known, _)| *known == name).ok_or(Refusal::Unknown)?;
    let count = count as i32;
    if (*arity >= 0 && count != *arity) || (*arity < 0 && count < -arity) { Err(Refusal::Arity) } else { Ok(()) }
}

/// Redis's words for a command it does not know: the name as sent, then the first arguments
/// (each quoted and followed by a space) while the list is under 128 bytes.
fn unknown_command(args: &[Vec<u8>]) -> Reply {
    let mut listed = String::new();
    for arg in &args[1..] {
        if listed.len() >= 128 {
            break;
        }
        let text = String::from_utf8_lossy(arg);
        let room = 128 - listed.len();
        let cut: String = text
            .chars()
            .scan(0, |used, c| {
                *used += c.len_utf8();
                (*used <= room).then_some(c)
            })
            .collect();
        listed.push_str(&format!("'{cut}' "));
    }
    let name: String = String::from_utf8_lossy(&args[0]).chars().take(128).collect();
    Reply::err(format!("ERR unknown command '{name}', with args beginning with: {listed}"))
}

fn arity_error(name: &str) -> Reply {
    Reply::err(format!("ERR wrong number of arguments for '{}' command", name.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(ks: &mut Keyspace, now_ms: u64, parts: &[&str]) -> Reply {
        let args: Vec<Vec<u8>> = parts.iter().map(|p| p.as_bytes().to_vec()).collect();
        ks.execute(&args, Duration::from_millis(now_ms), (0, 0))
    }

    #[test]
    fn strings_expire_on_simulated_time() {
        let mut ks = Keyspace::default();
        assert_eq!(cmd(&mut ks, 0, &["SET", "k", "v", "PX", "100"]), Reply::ok());
        assert_eq!(cmd(&mut ks, 0, &["SET", "k", "w", "NX"]), Reply::Bulk(None));
        assert_eq!(cmd(&mut ks, 50, &["PTTL", "k"]), Reply::Int(50));
        assert_eq!(cmd(&mut ks, 99, &["GET", "k"]), Reply::Bulk(Some(b"v".to_vec())));
        assert_eq!(cmd(&mut ks, 100, &["GET", "k"]), Reply::Bulk(None));
        assert_eq!(cmd(&mut ks, 100, &["PTTL", "k"]), Reply::Int(-2));
        assert_eq!(cmd(&mut ks, 100, &["INCR", "n"]), Reply::Int(1));
        assert_eq!(cmd(&mut ks, 100, &["PTTL", "n"]), Reply::Int(-1));
    }

    #[test]
    fn hashes_and_sorted_sets() {
        let mut ks = Keyspace::default();
        assert_eq!(cmd(&mut ks, 0, &["HSET", "h", "v", "1", "d", "x"]), Reply::Int(2));
        assert_eq!(
            cmd(&mut ks, 0, &["HMGET", "h", "v", "nope"]),
            Reply::Array(vec![Reply::Bulk(Some(b"1".to_vec())), Reply::Bulk(None)])
        );
        assert_eq!(cmd(&mut ks, 0, &["GET", "h"]), Reply::err(WRONGTYPE));
        assert_eq!(cmd(&mut ks, 0, &["ZADD", "z", "30", "c"]), Reply::Int(1));
        assert_eq!(cmd(&mut ks, 0, &["ZADD", "z", "10", "a"]), Reply::Int(1));
        assert_eq!(cmd(&mut ks, 0, &["ZSCORE", "z", "a"]), Reply::Bulk(Some(b"10".to_vec())));
        assert_eq!(cmd(&mut ks, 0, &["ZSCORE", "z", "nobody"]), Reply::Bulk(None));
        assert_eq!(
            cmd(&mut ks, 0, &["ZRANGE", "z", "0", "0", "WITHSCORES"]),
            Reply::Array(vec![Reply::Bulk(Some(b"a".to_vec())), Reply::Bulk(Some(b"10".to_vec()))])
        );
        assert_eq!(cmd(&mut ks, 0, &["ZREMRANGEBYSCORE", "z", "-inf", "10"]), Reply::Int(1));
        assert_eq!(cmd(&mut ks, 0, &["ZCARD", "z"]), Reply::Int(1));
        assert_eq!(
            cmd(&mut ks, 0, &["KEYS", "*"]),
            Reply::Array(vec![Reply::Bulk(Some(b"h".to_vec())), Reply::Bulk(Some(b"z".to_vec()))])
        );
    }
}

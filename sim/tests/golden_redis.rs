//! Golden RESP transcripts: the exact bytes real Redis (7.0) answered to a fixed list of the
//! commands the project uses, their errors and Lua's conversions, recorded once and replayed
//! against the sim Redis as a regression test. `ATLAS_RECORD_GOLDEN=1` records the transcript
//! again from the server at `ATLAS_TEST_REDIS_URL`.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use atlas_sim::redis_host::{RedisState, encode};

const TRANSCRIPT: &str = "tests/golden/redis.transcript";

const RELEASE: &str = include_str!("../../app/src/coord/lua/release.lua");
const EXTEND: &str = include_str!("../../app/src/coord/lua/extend_update.lua");

/// The commands, in order, on keys under `golden:` (emptied before recording).
fn commands() -> Vec<Vec<String>> {
    let release_sha = sha1_smol::Sha1::from(RELEASE).digest().to_string();
    let lines: Vec<Vec<&str>> = vec![
        vec!["SET", "golden:s", "v1"],
        vec!["GET", "golden:s"],
        vec!["SET", "golden:s", "v2", "NX", "PX", "60000"],
        vec!["SET", "golden:s", "v3", "XX", "PX", "60000"],
        vec!["GET", "golden:s"],
        vec!["SET", "golden:n", "v", "NX"],
        vec!["PTTL", "golden:n"],
        vec!["PTTL", "golden:missing"],
        vec!["PEXPIRE", "golden:missing", "100"],
        vec!["INCR", "golden:counter"],
        vec!["INCR", "golden:counter"],
        vec!["INCR", "golden:s"],
        vec!["GET"],
        vec!["SET", "golden:s"],
        vec!["SET", "golden:s", "v", "PX", "abc"],
        vec!["SET", "golden:s", "v", "PX", "0"],
        vec!["HSET", "golden:h", "v", "1", "d", "data"],
        vec!["HSET", "golden:h", "v", "2"],
        vec!["HGET", "golden:h", "v"],
        vec!["HMGET", "golden:h", "v", "nope", "d"],
        vec!["HDEL", "golden:h", "d", "nope"],
        vec!["HGET", "golden:s", "v"],
        vec!["GET", "golden:h"],
        vec!["HSET", "golden:h", "odd"],
        vec!["ZADD", "golden:z", "5", "a", "3", "b"],
        vec!["ZADD", "golden:z", "7", "a"],
        vec!["ZSCORE", "golden:z", "a"],
        vec!["ZSCORE", "golden:z", "missing"],
        vec!["ZCARD", "golden:z"],
        vec!["ZRANGE", "golden:z", "0", "-1"],
        vec!["ZREMRANGEBYSCORE", "golden:z", "-inf", "4"],
        vec!["ZRANGE", "golden:z", "0", "-1", "WITHSCORES"],
        vec!["ZADD", "golden:s", "1", "m"],
        vec!["ZADD", "golden:z", "notanumber", "m"],
        vec!["DEL", "golden:s", "golden:missing", "golden:counter"],
        vec!["EXISTS", "golden:s", "golden:h"],
        vec!["EVALSHA", "0000000000000000000000000000000000000000", "0"],
        vec!["SCRIPT", "EXISTS", &release_sha],
        vec!["SCRIPT", "LOAD", RELEASE],
        vec!["SCRIPT", "EXISTS", &release_sha, "0000000000000000000000000000000000000000"],
        vec!["SET", "golden:lease", "token-1", "PX", "60000"],
        vec!["EVALSHA", &release_sha, "1", "golden:lease", "token-2"],
        vec!["EVALSHA", &release_sha, "1", "golden:lease", "token-1"],
        vec!["EVALSHA", &release_sha, "1", "golden:lease", "token-1"],
        vec!["EVAL", EXTEND, "2", "golden:lease", "golden:marker", "token-1", "60000"],
        vec!["EVAL", "return redis.call('HSET', KEYS[1], 'f', 'v')", "1", "golden:z"],
        vec!["EVAL", "local x = 1\nreturn redis.call('GET', KEYS[1])", "1", "golden:h"],
        vec!["EVAL", "return redis.pcall('GET', KEYS[1])", "1", "golden:h"],
        vec!["EVAL", "return {1, 2, false, 4}", "0"],
        vec!["EVAL", "return 3.99", "0"],
        vec!["EVAL", "return true", "0"],
        vec!["EVAL", "return redis.status_reply('FINE')", "0"],
        vec!["EVAL", "return redis.error_reply('MY failure')", "0"],
        vec!["EVAL", "return {err = 'TABLE failure'}", "0"],
        vec!["EVAL", "return ARGV[1] .. KEYS[1]", "1", "golden:k", "arg-"],
        vec!["EVAL", "return 1", "2", "golden:only-one"],
        vec!["EVAL", "return redis.call('GET', KEYS[1])", "notanumber"],
        vec!["SET", "golden:o", "v", "NX", "XX"],
        vec!["SET", "golden:o", "v", "PX", "100", "EX", "1"],
        vec!["SET", "golden:o", "v", "PX", "abc", "NX", "XX"],
        vec!["SET", "golden:o", "v", "PX", "100", "PX", "60000"],
        vec!["PEXPIRE", "golden:o", "60000"],
        vec!["ZADD", "golden:z", "nan", "m"],
        vec!["ZADD", "golden:z", "-Infinity", "low", "1.5", "mid", "inf", "high"],
        vec!["ZRANGE", "golden:z", "0", "-1", "WITHSCORES"],
        vec!["ZREMRANGEBYSCORE", "golden:z", "(1.5", "(8"],
        vec!["ZREMRANGEBYSCORE", "golden:z", "nan", "1"],
        vec!["ZRANGE", "golden:z", "0", "-1"],
        vec!["EVAL", "return redis.call('GET')", "0"],
        vec!["EVAL", "return redis.pcall('GET')", "0"],
        vec!["EVAL", "local function f() return redis.call('NOPE') end\nreturn f()", "0"],
        vec!["EVAL", "return redis.call()", "0"],
        vec!["EVAL", "return redis.call('GET', {})", "0"],
        vec!["EVAL", "return redis.call('EVAL', 'return 1', 0)", "0"],
        vec!["EVAL", "return +", "0"],
        vec!["EVAL", "error('boom')", "0"],
        vec!["EVAL", "error('bare', 0)", "0"],
        vec!["EVAL", "error({err = 'MY boom'})", "0"],
        vec!["EVAL", "local x = 1\nreturn x.y.z", "0"],
        vec!["EVAL", "local function f()\n  error('deep')\nend\nf()", "0"],
        vec!["NOPE", "x", "y"],
        vec!["nope"],
        vec!["PING", "hi"],
        vec!["ZADD", "golden:z", "1", "a", "2"],
        vec!["EVAL", "return redis.call('HSET', KEYS[1], 'f', 'v', 'g')", "1", "golden:h"],
        vec!["EVAL", "error(true)", "0"],
        vec!["EVAL", "error(nil)", "0"],
        vec!["SET", "golden:o", "v", "EX", "9223372036854775807"],
        vec!["SET", "golden:o", "v", "PX", "9223372036854775807"],
        vec!["ZADD", "golden:z", "1e400", "m"],
        vec!["ZADD", "golden:z", "1e-400", "m"],
        vec!["ZADD", "golden:z", "", "m"],
        vec!["ZADD", "golden:z", " 1", "m"],
        vec!["ZADD", "golden:z", "0.5", "half", "2", "two", "3", "three"],
        vec!["ZREMRANGEBYSCORE", "golden:z", "", "0.5"],
        vec!["ZREMRANGEBYSCORE", "golden:z", "(", "1.5"],
        vec!["ZREMRANGEBYSCORE", "golden:z", " 2", "2"],
        vec!["ZREMRANGEBYSCORE", "golden:z", "1e400", "1"],
        vec!["ZREMRANGEBYSCORE", "golden:z", "(2 ", "5"],
        vec!["ZRANGE", "golden:z", "0", "-1", "WITHSCORES"],
    ];
    lines.into_iter().map(|l| l.into_iter().map(str::to_owned).collect()).collect()
}

fn request(args: &[String]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n", a.len()).into_bytes());
        out.extend(a.as_bytes());
        out.extend(b"\r\n");
    }
    out
}

/// One RESP2 reply read whole from `stream` (bytes already read are in `buffer`).
fn read_reply(stream: &mut std::net::TcpStream, buffer: &mut Vec<u8>) -> Vec<u8> {
    loop {
        if let Some(end) = reply_end(buffer, 0) {
            return buffer.drain(..end).collect();
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).expect("Redis answers");
        assert!(n > 0, "Redis closed the connection");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Where the reply starting at `at` ends, if it is all there.
fn reply_end(b: &[u8], at: usize) -> Option<usize> {
    let line_end = at + b.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
    let head = std::str::from_utf8(&b[at + 1..line_end]).ok()?;
    let after = line_end + 2;
    match b.get(at)? {
        b'+' | b'-' | b':' => Some(after),
        b'$' => {
            let len: i64 = head.parse().ok()?;
            if len < 0 {
                Some(after)
            } else {
                (b.len() >= after + len as usize + 2).then_some(after + len as usize + 2)
            }
        }
        b'*' => {
            let n: i64 = head.parse().ok()?;
            let mut end = after;
            for _ in 0..n.max(0) {
                end = reply_end(b, end)?;
            }
            Some(end)
        }
        _ => None,
    }
}

/// The transcript: per command, its arguments as JSON and the reply's bytes, escaped.
fn transcript(replies: &[Vec<u8>]) -> String {
    commands()
        .iter()
        .zip(replies)
        .map(|(args, reply)| format!("> {}\n< {}\n", serde_json::to_string(args).unwrap(), reply.escape_ascii()))
        .collect()
}

/// `replies` make the recorded transcript, line for line.
fn assert_transcript(replies: &[Vec<u8>]) {
    let text = std::fs::read_to_string(TRANSCRIPT).expect("the recorded transcript");
    let ours = transcript(replies);
    for (i, (want, got)) in text.lines().zip(ours.lines()).enumerate() {
        assert_eq!(got, want, "line {} of {TRANSCRIPT}", i + 1);
    }
    assert_eq!(text.lines().count(), ours.lines().count());
}

#[test]
fn record_the_transcript_from_real_redis_when_asked() {
    if std::env::var_os("ATLAS_RECORD_GOLDEN").is_none() {
        return;
    }
    let url = std::env::var("ATLAS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let url = url::Url::parse(&url).unwrap();
    let mut stream = std::net::TcpStream::connect((url.host_str().unwrap(), url.port().unwrap_or(6379))).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buffer = Vec::new();
    let mut say = |args: &[String]| {
        stream.write_all(&request(args)).unwrap();
        read_reply(&mut stream, &mut buffer)
    };
    let keys =
        ["golden:s", "golden:n", "golden:counter", "golden:h", "golden:z", "golden:lease", "golden:marker", "golden:o"];
    say(&std::iter::once("DEL".to_owned()).chain(keys.iter().map(|k| k.to_string())).collect::<Vec<_>>());
    say(&["SCRIPT".into(), "FLUSH".into()]);
    let replies: Vec<Vec<u8>> = commands().iter().map(|c| say(c)).collect();
    std::fs::write(TRANSCRIPT, transcript(&replies)).unwrap();
}

#[test]
fn the_sim_redis_replays_the_golden_transcript_byte_for_byte() {
    let mut state = RedisState::default();
    let mut replayed = Vec::new();
    for args in commands() {
        let bytes: Vec<Vec<u8>> = args.iter().map(|a| a.clone().into_bytes()).collect();
        replayed.push(encode(state.execute(&bytes, Duration::from_secs(1))));
    }
    assert_transcript(&replayed);
}

/// The same transcript through the sim Redis host's own socket: the request bytes go over
/// simulated TCP into its RESP parser, and the reply bytes read back are compared.
#[test]
fn the_sim_redis_host_replays_the_golden_transcript_over_its_socket() {
    use std::cell::RefCell;
    use std::rc::Rc;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut sim =
        atlas_sim::world::builder(1, Duration::from_secs(60), Duration::from_millis(1), Default::default()).build();
    atlas_sim::world::add_redis(&mut sim, Rc::new(RefCell::new(RedisState::default())));
    let replies = Rc::new(RefCell::new(Vec::new()));
    let out = replies.clone();
    sim.client("atlas-0", async move {
        let address = (atlas_sim::world::REDIS_HOST, atlas_sim::redis_host::REDIS_PORT);
        let mut stream = turmoil::net::TcpStream::connect(address).await?;
        let mut buffer = Vec::new();
        for args in commands() {
            stream.write_all(&request(&args)).await?;
            let reply = loop {
                if let Some(end) = reply_end(&buffer, 0) {
                    break buffer.drain(..end).collect::<Vec<u8>>();
                }
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await?;
                assert!(n > 0, "the sim Redis closed the connection");
                buffer.extend_from_slice(&chunk[..n]);
            };
            out.borrow_mut().push(reply);
        }
        Ok(())
    });
    sim.run().expect("the simulation runs");
    assert_transcript(&replies.borrow());
}

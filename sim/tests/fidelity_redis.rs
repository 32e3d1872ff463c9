//! The sim Redis held to real Redis command by command: random sequences of the commands the
//! project uses (those its scripts call, the scripts themselves by EVALSHA and SCRIPT LOAD, and
//! the errors a wrong call gets: WRONGTYPE, wrong arity, NOSCRIPT), from two interleaved
//! connections, with keys expiring while time passes, through the same redis-rs code, must get
//! the same replies and errors. `ATLAS_FIDELITY_SEQUENCES` sets how many (BENCHMARKS.md).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use atlas::coord::connector::{RedisConnector, RedisTarget, TcpDialer};
use atlas::ports::{Clock, Ids, SeededIds};
use atlas::runtime::live::SystemClock;
use atlas_sim::clock::SimClock;
use atlas_sim::redis_host::RedisState;
use atlas_sim::world::{self, Network};

/// A short key lifetime, and a pause long enough for it to pass: a key set with the first is
/// gone after the second, and alive before it (commands take far less than the lifetime).
const SHORT_TTL_MS: u64 = 400;
const PAUSE: Duration = Duration::from_millis(1000);

/// The project's scripts whose answers do not depend on the clock, called by EVALSHA.
const SCRIPTS: [&str; 3] = [
    include_str!("../../app/src/coord/lua/release.lua"),
    include_str!("../../app/src/coord/lua/renew.lua"),
    include_str!("../../app/src/coord/lua/extend_update.lua"),
];

#[derive(Clone, Debug)]
enum Step {
    /// A command on connection 0 or 1.
    Command(u8, Vec<String>),
    Pause,
}

fn sha(script: &str) -> String {
    sha1_smol::Sha1::from(script).digest().to_string()
}

/// Project script `i` made this sequence's own (`tag` is unique to it): the script cache is the
/// server's, shared with every other test, so only scripts no one else loads have a known state.
fn script(i: u64, tag: &str) -> String {
    format!("{}\n-- {tag}", SCRIPTS[i as usize])
}

/// A sequence of steps on keys of one run (`p` is its prefix): strings, hashes and sorted sets
/// share the key names, so that a command meets the wrong kind of key now and then.
fn steps(seed: u64, p: &str, pauses: bool) -> Vec<Step> {
    let r = SeededIds::new(seed);
    let n = |k: u64| r.next_u64() % k;
    let key = |n: u64| format!("{p}k{n}");
    let ttl = |n: u64| if n == 0 { SHORT_TTL_MS.to_string() } else { "60000".to_owned() };
    let mut out = Vec::new();
    for _ in 0..30 {
        let k = key(n(4));
        let cmd: Vec<String> = match n(24) {
            0 | 1 => vec!["SET".into(), k, format!("v{}", n(3))],
            2 => {
                vec!["SET".into(), k, format!("v{}", n(3)), "PX".into(), if n(8) == 0 { "0".into() } else { ttl(n(2)) }]
            }
            3 => vec!["SET".into(), k, "v".into(), if n(2) == 0 { "NX" } else { "XX" }.into(), "PX".into(), ttl(n(2))],
            4 | 5 => vec!["GET".into(), k],
            6 => vec!["DEL".into(), k, key(n(4))],
            7 => vec!["PEXPIRE".into(), k, ttl(n(2))],
            8 => vec!["PTTL".into(), k],
            9 => vec!["HSET".into(), k, format!("f{}", n(3)), format!("v{}", n(3))],
            10 => vec!["HGET".into(), k, format!("f{}", n(3))],
            11 => vec!["HMGET".into(), k, "f0".into(), "f1".into(), "f2".into()],
            12 => vec!["HDEL".into(), k, format!("f{}", n(3))],
            // Now and then a score or a lifetime Redis refuses.
            13 => {
                vec!["ZADD".into(), k, if n(8) == 0 { "x1".into() } else { n(1000).to_string() }, format!("m{}", n(3))]
            }
            14 => vec!["ZSCORE".into(), k, format!("m{}", n(3))],
            15 => vec!["ZCARD".into(), k],
            16 => vec!["ZREMRANGEBYSCORE".into(), k, "-inf".into(), n(1000).to_string()],
            17 => vec!["ZRANGE".into(), k, "0".into(), "-1".into()],
            // Wrong arity, as a bug in a script or a caller would send it.
            18 => [vec!["GET"], vec!["SET", "x"], vec!["HSET", "x", "f"], vec!["ZADD", "x", "1"], vec!["PTTL"]]
                [n(5) as usize]
                .iter()
                .map(|s| s.replace('x', &k))
                .collect(),
            19 => vec!["SCRIPT".into(), "LOAD".into(), script(n(3), p)],
            20 => vec!["SCRIPT".into(), "EXISTS".into(), sha(&script(n(3), p)), sha(&format!("return 1 -- {p}"))],
            // A script by its SHA: NOSCRIPT until some connection loaded it (the cache is shared).
            21 | 22 => {
                let s = n(3);
                let mut cmd = vec!["EVALSHA".into(), sha(&script(s, p))];
                match s {
                    0 => cmd.extend(["1".into(), k, format!("v{}", n(3))]),
                    1 => cmd.extend(["1".into(), k, format!("v{}", n(3)), ttl(n(2))]),
                    _ => cmd.extend(["2".into(), k, key(n(4)), format!("v{}", n(3)), ttl(n(2))]),
                }
                cmd
            }
            _ => vec!["EVALSHA".into(), sha(&format!("return 1 -- {p}")), "0".into()],
        };
        out.push(Step::Command(n(2) as u8, cmd));
        if pauses && n(12) == 0 {
            out.push(Step::Pause);
        }
    }
    out
}

/// A reply as both sides must give it: a remaining lifetime only as "some" (each side's clock
/// moved its own way), an error with its code and words.
fn words(reply: redis::RedisResult<redis::Value>, cmd: &[String]) -> String {
    match reply {
        Ok(redis::Value::Int(ms)) if cmd[0] == "PTTL" && ms > 0 => "ttl>0".into(),
        Ok(value) => format!("{value:?}"),
        Err(e) => format!("ERROR {} {}", e.code().unwrap_or("?"), e.detail().unwrap_or("")),
    }
}

async fn apply(connections: [redis::aio::MultiplexedConnection; 2], steps: &[Step]) -> Vec<String> {
    let mut out = Vec::new();
    for step in steps {
        match step {
            Step::Pause => tokio::time::sleep(PAUSE).await,
            Step::Command(c, args) => {
                let mut cmd = redis::cmd(&args[0]);
                for a in &args[1..] {
                    cmd.arg(a);
                }
                let mut connection = connections[*c as usize].clone();
                let reply: redis::RedisResult<redis::Value> =
                    tokio::time::timeout(Duration::from_secs(5), cmd.query_async(&mut connection))
                        .await
                        .expect("an answer within 5 s");
                out.push(words(reply, args));
            }
        }
    }
    out
}

async fn two_connections<D: atlas::coord::connector::Dialer>(
    dial: impl Fn() -> RedisConnector<D>,
) -> [redis::aio::MultiplexedConnection; 2] {
    let (a, b) = (dial(), dial());
    let (a, b) = (a.connection().await.unwrap().1, b.connection().await.unwrap().1);
    [a, b]
}

/// The steps on real Redis; the sequence's keys are deleted afterwards (its scripts stay cached
/// until the server's cache is flushed: they are a few hundred bytes each).
fn real(steps: &[Step], prefix: &str) -> Vec<String> {
    let url = std::env::var("ATLAS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let target = RedisTarget::from_url(&url::Url::parse(&url).unwrap()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let ids: Arc<dyn Ids> = Arc::new(SeededIds::new(7));
        let dial = || {
            RedisConnector::new(TcpDialer::new(&target, None).unwrap(), target.info.clone(), clock.clone(), ids.clone())
        };
        let connections = two_connections(dial).await;
        let answers = apply(connections.clone(), steps).await;
        let mut first = connections[0].clone();
        let keys: Vec<String> = (0..4).map(|n| format!("{prefix}k{n}")).collect();
        let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut first).await.unwrap();
        answers
    })
}

fn modelled(seed: u64, steps: Vec<Step>) -> Vec<String> {
    let mut sim = world::builder(seed, Duration::from_secs(120), Duration::from_millis(1), Network::default()).build();
    world::add_redis(&mut sim, Rc::new(RefCell::new(RedisState::default())));
    let answers = Rc::new(RefCell::new(Vec::new()));
    let out = answers.clone();
    sim.client("atlas-0", async move {
        let clock: Arc<dyn Clock> = Arc::new(SimClock::default());
        let ids = world::instance_ids(seed, 0, Duration::ZERO);
        let dial = || {
            let dialer = atlas_sim::dialer::SimDialer {
                host: world::REDIS_HOST.into(),
                port: atlas_sim::redis_host::REDIS_PORT,
            };
            RedisConnector::new(dialer, Default::default(), clock.clone(), ids.clone())
        };
        *out.borrow_mut() = apply(two_connections(dial).await, &steps).await;
        Ok(())
    });
    sim.run().expect("the simulation runs");
    answers.take()
}

#[test]
fn the_sim_redis_answers_every_command_like_real_redis() {
    let count = atlas_tests::fidelity_sequences(150);
    // Keys and scripts no other run of this test (another process, an earlier CI run on the
    // same server) has used.
    let run = atlas_tests::unique_name("fid");
    let started = std::time::Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..count {
        let prefix = format!("fid:{run}:{seed}:");
        // Pauses (real time on the real side) in one sequence of sixteen.
        let steps = steps(seed, &prefix, seed % 16 == 0);
        let real = real(&steps, &prefix);
        let model = modelled(seed, steps.clone());
        for (i, (r, m)) in real.iter().zip(&model).enumerate() {
            assert_eq!(
                r,
                m,
                "seed {seed}, step {i} ({:?}) diverged",
                steps.iter().filter(|s| matches!(s, Step::Command(..))).nth(i)
            );
        }
        assert_eq!(real.len(), model.len());
        for answer in &real {
            seen.insert(answer.split(' ').take(2).collect::<Vec<_>>().join(" "));
        }
    }
    // The sequences reached what they are for.
    for wanted in ["ERROR WRONGTYPE", "ERROR NOSCRIPT", "ERROR ERR", "ttl>0", "nil"] {
        assert!(seen.iter().any(|s| s.contains(wanted)), "no answer with {wanted} in {seen:?}");
    }
    eprintln!("{count} sequences, 0 divergences, in {:.1} s", started.elapsed().as_secs_f64());
}

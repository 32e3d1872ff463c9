//! Keeps the sim Redis honest: the same random sequences of coordination operations, through
//! the real `RedisCoordination` and its Lua scripts, on real Redis and on the sim Redis host,
//! must give the same answers. (DESIGN.md §7, layer 4.)

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use atlas::coord::connector::{RedisConnector, RedisTarget, TcpDialer};
use atlas::coord::keys::KeySpace;
use atlas::coord::limits::Flood;
use atlas::coord::redis::RedisCoordination;
use atlas::domain::UserId;
use atlas::ports::coordination::*;
use atlas::ports::{Clock, Coordination, Ids, SeededIds};
use atlas::runtime::live::SystemClock;
use atlas_sim::clock::SimClock;
use atlas_sim::redis_host::RedisState;
use atlas_sim::world::{self, Network};

/// A flood limit the operations reach, so that both sides' flood answers are compared.
const TIGHT_FLOOD: Flood = Flood { max: 3, window: Duration::from_secs(60) };

fn admission(update: i64) -> Admission {
    if update % 2 == 0 { Admission::Exempt } else { Admission::Counted }
}

#[derive(Clone, Debug)]
enum Op {
    Begin {
        user: i64,
        update: i64,
    },
    /// Commit the user's latest ticket.
    Commit {
        user: i64,
        write: u8,
    },
    Acquire {
        user: i64,
    },
    /// Release the latest guard of the user's lock.
    Release {
        user: i64,
    },
    Rate {
        user: i64,
        action: u8,
        /// Its id: drawn from a few, so the same attempt comes again now and then.
        attempt: u8,
    },
    Lead {
        role: u8,
    },
    Resign {
        role: u8,
    },
}

fn ops(seed: u64) -> Vec<Op> {
    let r = SeededIds::new(seed);
    let pick = |n: u64| r.next_u64() % n;
    (0..30)
        .map(|_| {
            let user = pick(3) as i64 + 1;
            match pick(7) {
                0 | 1 => Op::Begin { user, update: pick(12) as i64 + 1 },
                2 => Op::Commit { user, write: pick(4) as u8 },
                3 => Op::Acquire { user },
                4 => Op::Release { user },
                5 => Op::Rate { user, action: pick(5) as u8, attempt: pick(6) as u8 },
                _ if pick(2) == 0 => Op::Lead { role: pick(2) as u8 },
                _ => Op::Resign { role: pick(2) as u8 },
            }
        })
        .collect()
}

const ACTIONS: [LimitedAction; 5] = [
    LimitedAction::WithdrawalRequest,
    LimitedAction::PaymentAttempt,
    LimitedAction::PromoAttempt,
    LimitedAction::AdminCommand,
    LimitedAction::TrialActivation,
];
const ROLES: [Role; 2] = [Role::Reminders, Role::Poller];

/// Applies the operations and describes each answer without tokens, epochs or timings (which
/// legitimately differ between the two worlds).
async fn apply(c: &impl Coordination, ops: &[Op]) -> Vec<String> {
    let mut tickets: std::collections::BTreeMap<i64, UpdateTicket> = Default::default();
    let mut guards: std::collections::BTreeMap<i64, LockGuard> = Default::default();
    let mut leads: std::collections::BTreeMap<u8, Leadership> = Default::default();
    let mut fences: std::collections::BTreeMap<i64, u64> = Default::default();
    let mut out = Vec::new();
    let uid = |n: i64| UserId::new(n).unwrap();
    for op in ops {
        let answer = match op {
            // Even update ids are payments (never dropped by the flood limit), odd ones are not.
            Op::Begin { user, update } => {
                match c.begin_update(uid(*user), *update, admission(*update)).await.unwrap() {
                    BeginOutcome::Proceed(t) => {
                        let s = format!("proceed v{} {:?}", t.fsm.version, t.fsm.data);
                        tickets.insert(*user, t);
                        s
                    }
                    BeginOutcome::Busy { .. } => "busy".into(),
                    // Its wait depends on each side's clock.
                    BeginOutcome::Flooded { .. } => "flooded".into(),
                    other => format!("{other:?}"),
                }
            }
            Op::Commit { user, write } => match tickets.get(user) {
                None => "no ticket".into(),
                Some(t) => {
                    let write = match write {
                        0 => FsmWrite::Set(format!("s{}", t.update_id).into_bytes()),
                        1 => FsmWrite::Clear,
                        2 => FsmWrite::Retry,
                        _ => FsmWrite::Keep,
                    };
                    format!("{:?}", c.commit_update(uid(*user), t, write).await.unwrap())
                }
            },
            Op::Acquire { user } => {
                match c.acquire_lock(LockName::KeyReissue(uid(*user)), Duration::from_secs(30)).await.unwrap() {
                    Some(g) => {
                        let grew = fences.get(user).is_none_or(|last| g.fencing_token > *last);
                        fences.insert(*user, g.fencing_token);
                        guards.insert(*user, g);
                        format!("acquired (token grew: {grew})")
                    }
                    None => "held".into(),
                }
            }
            Op::Release { user } => match guards.get(user) {
                None => "no guard".into(),
                Some(g) => format!("released {}", c.release_lock(g).await.unwrap()),
            },
            Op::Rate { user, action, attempt } => {
                match c.check_rate(uid(*user), ACTIONS[*action as usize], &format!("a{attempt}")).await.unwrap() {
                    Decision::Allowed => "allowed".into(),
                    Decision::Denied { .. } => "denied".into(),
                }
            }
            Op::Lead { role } => {
                let current = leads.get(role).cloned();
                match c.lead(ROLES[*role as usize], current.as_ref(), Duration::from_secs(30)).await.unwrap() {
                    Some(l) => {
                        let kept = current.as_ref().is_some_and(|c| c.epoch == l.epoch);
                        leads.insert(*role, l);
                        format!("leading (same epoch: {kept})")
                    }
                    None => {
                        leads.remove(role);
                        "not leading".into()
                    }
                }
            }
            Op::Resign { role } => match leads.remove(role) {
                Some(l) => format!("{:?}", c.resign(&l).await.map(|_| "resigned").unwrap()),
                None => "not held".into(),
            },
        };
        out.push(answer);
    }
    out
}

fn real_answers(keys: &KeySpace, ops: &[Op]) -> Vec<String> {
    let url = std::env::var("ATLAS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let target = RedisTarget::from_url(&url::Url::parse(&url).unwrap()).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let ids: Arc<dyn Ids> = Arc::new(SeededIds::new(7));
    let connector = RedisConnector::new(
        TcpDialer::new(&target, None).expect("plain TCP"),
        target.info.clone(),
        clock.clone(),
        ids.clone(),
    );
    let c = RedisCoordination::new(connector, keys.clone(), clock, ids).with_flood(TIGHT_FLOOD);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(apply(&c, ops))
}

fn sim_answers(seed: u64, ops: Vec<Op>) -> Vec<String> {
    let mut sim = world::builder(seed, Duration::from_secs(60), Duration::from_millis(1), Network::default()).build();
    world::add_redis(&mut sim, Rc::new(RefCell::new(RedisState::default())));
    let answers = Rc::new(RefCell::new(Vec::new()));
    let out = answers.clone();
    sim.client("atlas-0", async move {
        let clock: std::sync::Arc<dyn atlas::ports::Clock> = std::sync::Arc::new(SimClock::default());
        let c = world::redis_coordination(clock, world::instance_ids(seed, 0, Duration::ZERO), Duration::from_secs(30))
            .with_flood(TIGHT_FLOOD);
        *out.borrow_mut() = apply(&c, &ops).await;
        Ok(())
    });
    sim.run().expect("the simulation runs");
    answers.take()
}

#[test]
fn sim_redis_answers_like_real_redis() {
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let started = std::time::Instant::now();
    let count = atlas_tests::fidelity_sequences(40);
    for seed in 0..count {
        let ops = ops(seed);
        let keys = KeySpace::new(&format!("diff{}x{run}x{seed}", std::process::id()), "test", 1);
        let real = real_answers(&keys, &ops);
        let sim = sim_answers(seed, ops.clone());
        if seed == 0 {
            eprintln!("seed 0 answers: {real:?}");
        }
        assert_eq!(real, sim, "seed {seed} diverged; operations: {ops:?}");
    }
    eprintln!("{count} sequences, 0 divergences, in {:.1} s", started.elapsed().as_secs_f64());
}

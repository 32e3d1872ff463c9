//! Concurrent store operations on real PostgreSQL held to the store model: several tasks run
//! money operations on the same users, the same promo code and the same idempotency keys at
//! once; every answer PostgreSQL gave must be the answer the model gives in some serial order
//! that respects real time (an operation that returned before another began comes first), and
//! the balances PostgreSQL ends with must be the model's after that order.
//! `ATLAS_FIDELITY_SEQUENCES` sets how many histories (BENCHMARKS.md).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use atlas::domain::*;
use atlas::ports::store::*;
use atlas::ports::{Ids, SeededIds};
use atlas_sim::store_host::SimStore;
use atlas_sim::store_host::model::Model;
use atlas_tests::{Template, TestDb, crypto, t0, uid};

const USERS: i64 = 2;
const TASKS: usize = 4;
const OPS_PER_TASK: usize = 3;
/// Histories checked at once, each on its own database.
const LANES: u64 = 2;
const CODE: &str = "ONCE";

#[derive(Clone, Copy, Debug)]
enum Op {
    TopUp { user: i64, payment: u64 },
    Debit { user: i64, key: u64 },
    Purchase { user: i64, key: u64, promo: bool },
    Withdraw { user: i64, key: u64 },
}

fn ops(seed: u64) -> Vec<Vec<Op>> {
    let r = SeededIds::new(seed);
    let n = |k: u64| r.next_u64() % k;
    (0..TASKS)
        .map(|_| {
            (0..OPS_PER_TASK)
                .map(|_| {
                    let user = n(USERS as u64) as i64 + 1;
                    match n(4) {
                        0 => Op::TopUp { user, payment: n(3) },
                        1 => Op::Debit { user, key: n(3) },
                        2 => Op::Purchase { user, key: n(3), promo: n(2) == 0 },
                        _ => Op::Withdraw { user, key: n(3) },
                    }
                })
                .collect()
        })
        .collect()
}

/// Every user starts with 300 (enough for one period of 199, not two) and one code has one use.
async fn arrange(s: &impl Store) {
    for user in 1..=USERS {
        s.register_user(uid(user), Language::En, None, None, t0()).await.unwrap();
        s.top_up(uid(user), crypto(&format!("seed{user}"), "300"), t0()).await.unwrap();
    }
    let promo = NewPromo {
        code: PromoCode::parse(CODE).unwrap(),
        discount: Percent::new(50).unwrap(),
        max_uses: NonZeroU32::new(1),
        expires_at: None,
        created_by: uid(99),
        correlation_id: None,
    };
    s.create_promo(promo, t0()).await.unwrap();
}

fn key(name: &str, user: i64, k: u64) -> Option<IdempotencyKey> {
    Some(IdempotencyKey::parse(&format!("{name}-key-{user}-{k}")).unwrap())
}

/// What an operation answered, without the ids the two stores number differently.
async fn apply(s: &impl Store, op: Op) -> String {
    let now = t0();
    match op {
        Op::TopUp { user, payment } => match s.top_up(uid(user), crypto(&format!("pay{payment}"), "100"), now).await {
            Ok(o) => format!("{:?} balance {}", o.applied, o.balance),
            Err(e) => format!("{e:?}"),
        },
        Op::Debit { user, key: k } => {
            let adjustment = AdminAdjustment {
                admin: uid(99),
                user: uid(user),
                amount: Money::parse("150").unwrap(),
                direction: Direction::Debit,
                reason: "lin".into(),
                correlation_id: None,
                idempotency_key: key("debit", user, k),
            };
            match s.admin_adjust(adjustment, now).await {
                Ok(o) => format!("{:?} balance {}", o.applied, o.balance),
                Err(e) => format!("{e:?}"),
            }
        }
        Op::Purchase { user, key: k, promo } => {
            let request = PurchaseRequest {
                user: uid(user),
                tariff: TariffCode::parse("basic").unwrap(),
                days: 30,
                promo: promo.then(|| PromoCode::parse(CODE).unwrap()),
                idempotency_key: key("buy", user, k),
            };
            match s.purchase_from_balance(request, now).await {
                Ok(o) => format!("{:?} amount {} balance {}", o.applied, o.amount, o.balance),
                Err(e) => format!("{e:?}"),
            }
        }
        Op::Withdraw { user, key: k } => {
            let requisites = Requisites::parse("card 0000 1111").unwrap();
            let (amount, minimum) = (Money::parse("100").unwrap(), Money::parse("100").unwrap());
            match s.create_withdrawal(uid(user), amount, requisites, minimum, key("out", user, k), now).await {
                Ok(o) => format!("{:?} balance {}", o.applied, o.balance),
                Err(e) => format!("{e:?}"),
            }
        }
    }
}

/// One operation of a history: when it began and returned (ticks of one counter), what it was
/// and what PostgreSQL answered.
#[derive(Clone, Debug)]
struct Done {
    began: u64,
    returned: u64,
    op: Op,
    answer: String,
}

impl Done {
    /// Whether the store could not say what became of the call (it timed out: the outcome is
    /// unknown). Such a call may have taken effect at any moment after it began, or not at all,
    /// and its answer says nothing.
    fn unknown(&self) -> bool {
        self.answer.contains("the outcome is unknown")
    }
}

async fn balances(s: &impl Store) -> Vec<String> {
    let mut out = Vec::new();
    for user in 1..=USERS {
        out.push(s.user(uid(user)).await.unwrap().map(|u| u.balance.to_string()).unwrap_or_default());
    }
    out
}

/// The model after `order` (indexes into `history`) from the arranged start: whether each
/// operation answered as PostgreSQL did, and the balances.
async fn replay(history: &[Done], order: &[usize]) -> Option<Vec<String>> {
    let model = SimStore::direct(Model::new());
    arrange(&model).await;
    for &i in order {
        let answer = apply(&model, history[i].op).await;
        if answer != history[i].answer && !history[i].unknown() {
            return None;
        }
    }
    Some(balances(&model).await)
}

/// A serial order of `history` that respects real time and gives PostgreSQL's answers and final
/// balances, searched depth first (each prefix replayed on a fresh model). A call of unknown
/// outcome constrains nothing after it began and may be left out (it never took effect).
async fn linearization(history: &[Done], finals: &[String]) -> Option<Vec<usize>> {
    let mut stack: Vec<Vec<usize>> = vec![Vec::new()];
    while let Some(prefix) = stack.pop() {
        let left: Vec<usize> = (0..history.len()).filter(|i| !prefix.contains(i)).collect();
        if left.iter().all(|&i| history[i].unknown()) && replay(history, &prefix).await.as_deref() == Some(finals) {
            return Some(prefix);
        }
        // Next may be any operation that began before every other left one returned.
        let returned = |i: usize| if history[i].unknown() { u64::MAX } else { history[i].returned };
        let earliest_return = left.iter().map(|&i| returned(i)).min().unwrap_or(u64::MAX);
        for &i in left.iter().rev().filter(|&&i| history[i].began < earliest_return) {
            let mut next = prefix.clone();
            next.push(i);
            if replay(history, &next).await.is_some() {
                stack.push(next);
            }
        }
    }
    None
}

/// Runs history `seed` on `db` (as a fresh copy holds) and checks it; how many of its operations
/// overlapped another.
async fn one_history(seed: u64, db: &TestDb) -> usize {
    arrange(&db.store).await;
    let clock = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for plan in ops(seed) {
        let (store, clock) = (db.store.clone(), clock.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for op in plan {
                let began = clock.fetch_add(1, Ordering::SeqCst);
                let answer = apply(&store, op).await;
                let returned = clock.fetch_add(1, Ordering::SeqCst);
                done.push(Done { began, returned, op, answer });
            }
            done
        }));
    }
    let mut history = Vec::new();
    for task in tasks {
        history.extend(task.await.unwrap());
    }
    let finals = balances(&db.store).await;
    let order = linearization(&history, &finals).await;
    assert!(
        order.is_some(),
        "seed {seed}: no serial order gives PostgreSQL's answers and balances {finals:?}: {history:#?}"
    );
    // The checker can say no: with one answer changed, or other final balances, no order fits.
    if seed == 0 {
        let mut tampered = history.clone();
        tampered[0].answer.push_str(" (changed)");
        assert!(linearization(&tampered, &finals).await.is_none(), "a changed answer must not linearize");
        let other = vec!["0.00".to_owned(); USERS as usize];
        assert!(linearization(&history, &other).await.is_none(), "other balances must not linearize");
    }
    // How many operations ran at the same time as another task's.
    history
        .iter()
        .filter(|a| history.iter().any(|b| b.began != a.began && a.began < b.returned && b.began < a.returned))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_histories_on_postgresql_are_serial_orders_of_the_model() {
    let count = atlas_tests::fidelity_sequences(20);
    // `ATLAS_FIDELITY_FIRST`: where the seeds start (to run some again).
    let first = atlas_tests::fidelity_first();
    let started = std::time::Instant::now();
    let template = std::sync::Arc::new(Template::new().await);
    // Two lanes at once, each on one database put back to the template's contents after each
    // history (checked), as copying one per history is slow.
    let lanes: Vec<_> = (0..LANES)
        .map(|lane| {
            let template = template.clone();
            tokio::spawn(async move {
                let db = TestDb::copy_of(&template, TASKS as u32).await;
                let mut overlapping = 0;
                for seed in (first + lane..first + count).step_by(LANES as usize) {
                    overlapping += one_history(seed, &db).await;
                    db.reset_to(&template).await.expect("reset the database");
                }
                overlapping
            })
        })
        .collect();
    let mut overlapping = 0;
    for lane in lanes {
        overlapping += lane.await.expect("a lane of histories");
    }
    let all = count as usize * TASKS * OPS_PER_TASK;
    assert!(overlapping * 2 > all, "the tasks ran at once ({overlapping} of {all} operations overlapped another)");
    eprintln!(
        "{count} histories, each linearizable ({overlapping} of {all} operations overlapped another), in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A call that timed out (its outcome unknown) may have taken effect or not: both final states
/// linearize, a third does not; and its answer constrains nothing. (Seed 9992 of the first long
/// run met such a timeout on a loaded machine and was reported as a divergence.)
#[tokio::test]
async fn a_call_of_unknown_outcome_may_have_taken_effect_or_not() {
    let unknown = "Unexpected(admin_adjust failed: no answer from PostgreSQL within 16 s (the outcome is unknown))";
    let history = vec![
        Done { began: 0, returned: 3, op: Op::Debit { user: 1, key: 0 }, answer: unknown.into() },
        Done { began: 1, returned: 2, op: Op::Withdraw { user: 2, key: 0 }, answer: "Done balance 200.00".into() },
    ];
    let balances = |one: &str| vec![one.to_owned(), "200.00".to_owned()];
    assert!(linearization(&history, &balances("150.00")).await.is_some(), "taken effect");
    assert!(linearization(&history, &balances("300.00")).await.is_some(), "never taken effect");
    assert!(linearization(&history, &balances("0.00")).await.is_none(), "taken effect twice");
    // The same history with a known answer is held to it.
    let mut known = history.clone();
    known[0].answer = "InsufficientBalance".into();
    assert!(linearization(&known, &balances("300.00")).await.is_none(), "a debit the model makes");
}

//! Keeps the store model honest: the same random sequences of store operations on real
//! PostgreSQL (the SQL functions) and on the sim's model must give the same answers, and leave
//! the same balances. (DESIGN.md §7, layer 4.) Ids are compared by the order they were created
//! in, since PostgreSQL's sequences also advance for rolled-back inserts.

use std::num::NonZeroU32;
use std::time::Duration as StdDuration;

use atlas::domain::*;
use atlas::ports::store::*;
use atlas::ports::vpn::PanelKey;
use atlas::ports::{Ids, SeededIds};
use atlas_sim::store_host::model::Model;
use atlas_tests::{TestDb, crypto, t0, uid};
use chrono::Duration;

const USERS: i64 = 4;
const CODES: [&str; 3] = ["ALPHA", "BETA", "GAMMA"];

/// An operation, referring to earlier results by their index (the k-th purchase, ...).
#[derive(Clone, Debug)]
enum Op {
    TopUp { user: i64, payment: u64, amount: &'static str },
    Adjust { user: i64, credit: bool, amount: &'static str },
    CreatePromo { code: usize, percent: u8, max: Option<u32> },
    Validate { user: i64, code: usize },
    Purchase { user: i64, tariff: &'static str, days: i32, promo: Option<usize>, key: Option<u64> },
    Pending { user: i64, stars: bool, promo: Option<usize>, key: Option<u64> },
    Finalize { purchase: usize, stars: bool, payment: u64, exact: bool },
    Close { purchase: usize, cancel: bool },
    Referral { purchase: usize },
    Withdraw { user: i64, amount: &'static str },
    Decide { withdrawal: usize, approve: bool },
    AutoRenewSwitch { user: i64, on: bool },
    AutoRenew { days_later: i64 },
    Trial { user: i64 },
    Activate { user: i64, ok: bool },
    Install { user: i64, token: u64 },
    ClaimFence { user: i64, token: u64 },
    Claim { user: i64, threshold: u64 },
}

fn ops(seed: u64) -> Vec<Op> {
    let r = SeededIds::new(seed);
    let n = |k: u64| r.next_u64() % k;
    let amounts = ["10", "199", "500", "1000", "0.01", "2500"];
    (0..60)
        .map(|_| {
            let user = n(USERS as u64) as i64 + 1;
            let opt = |k: u64| if n(2) == 0 { None } else { Some(n(k)) };
            match n(17) {
                0 | 1 => Op::TopUp { user, payment: n(8), amount: amounts[n(6) as usize] },
                2 => Op::Adjust { user, credit: n(2) == 0, amount: amounts[n(6) as usize] },
                3 => Op::CreatePromo {
                    code: n(3) as usize,
                    percent: [10, 50, 100, 0][n(4) as usize],
                    max: [None, Some(1), Some(2)][n(3) as usize],
                },
                4 => Op::Validate { user, code: n(3) as usize },
                5 | 6 => Op::Purchase {
                    user,
                    tariff: ["basic", "family", "gold"][n(3) as usize],
                    days: [30, 90, 31][n(3) as usize],
                    promo: opt(3).map(|c| c as usize),
                    key: opt(3),
                },
                7 => Op::Pending { user, stars: n(2) == 0, promo: opt(3).map(|c| c as usize), key: opt(3) },
                8 => Op::Finalize { purchase: n(6) as usize, stars: n(2) == 0, payment: n(6), exact: n(4) != 0 },
                9 => Op::Close { purchase: n(6) as usize, cancel: n(2) == 0 },
                10 => Op::Referral { purchase: n(6) as usize },
                11 => Op::Withdraw { user, amount: amounts[n(6) as usize] },
                12 => Op::Decide { withdrawal: n(4) as usize, approve: n(2) == 0 },
                13 => Op::AutoRenewSwitch { user, on: n(3) != 0 },
                14 => Op::AutoRenew { days_later: [0, 29, 40, 100][n(4) as usize] },
                15 => [Op::Trial { user }, Op::Activate { user, ok: n(2) == 0 }][n(2) as usize].clone(),
                _ => [
                    Op::Install { user, token: n(5) },
                    Op::ClaimFence { user, token: n(5) },
                    Op::Claim { user, threshold: n(3) },
                ][n(3) as usize]
                    .clone(),
            }
        })
        .collect()
}

/// Ids created so far, in order, so operations and answers can name them by index; with each
/// purchase's amount (to pay it exactly, or not).
#[derive(Default)]
struct Created {
    purchases: Vec<(PurchaseId, Money)>,
    withdrawals: Vec<WithdrawalId>,
}

impl Created {
    /// The index of a purchase, noting it if it is new.
    fn purchase(&mut self, id: PurchaseId, amount: Money) -> usize {
        match self.purchases.iter().position(|(p, _)| *p == id) {
            Some(i) => i,
            None => {
                self.purchases.push((id, amount));
                self.purchases.len() - 1
            }
        }
    }
}

fn request(user: i64, tariff: &str, days: i32, promo: Option<usize>, key: Option<u64>) -> PurchaseRequest {
    PurchaseRequest {
        user: uid(user),
        tariff: TariffCode::parse(tariff).unwrap(),
        days,
        promo: promo.map(|p| PromoCode::parse(CODES[p]).unwrap()),
        idempotency_key: key.map(|k| IdempotencyKey::parse(&format!("idem-key-{user}-{k}")).unwrap()),
    }
}

fn payment(stars: bool, id: u64, amount: Money) -> ProviderPayment {
    let provider = if stars { PaymentProviderKind::Stars } else { PaymentProviderKind::Crypto };
    ProviderPayment {
        provider,
        payment_id: ProviderPaymentId::parse(&format!("p{id}")).unwrap(),
        amount,
    }
}

/// Runs one operation on any store and describes the answer, ids renamed.
async fn apply(s: &impl Store, op: &Op, ids: &mut Created) -> String {
    let now = t0();
    match op.clone() {
        Op::TopUp { user, payment: p, amount } => {
            match s.top_up(uid(user), crypto(&format!("t{p}"), amount), now).await {
                Ok(o) => format!("{:?} balance {}", o.applied, o.balance),
                Err(e) => format!("{e:?}"),
            }
        }
        Op::Adjust { user, credit, amount } => {
            let adjustment = AdminAdjustment {
                admin: uid(99),
                user: uid(user),
                amount: Money::parse(amount).unwrap(),
                direction: if credit { Direction::Credit } else { Direction::Debit },
                reason: "diff".into(),
                correlation_id: None,
            };
            match s.admin_adjust(adjustment, now).await {
                Ok(o) => format!("balance {}", o.balance),
                Err(e) => format!("{e:?}"),
            }
        }
        Op::CreatePromo { code, percent, max } => {
            let promo = NewPromo {
                code: PromoCode::parse(CODES[code]).unwrap(),
                discount: Percent::new(percent).unwrap(),
                max_uses: max.map(|m| NonZeroU32::new(m).unwrap()),
                expires_at: None,
                created_by: uid(99),
            };
            format!("{:?}", s.create_promo(promo, now).await)
        }
        Op::Validate { user, code } => {
            format!("{:?}", s.validate_promo(uid(user), &PromoCode::parse(CODES[code]).unwrap(), now).await)
        }
        Op::Purchase { user, tariff, days, promo, key } => {
            match s.purchase_from_balance(request(user, tariff, days, promo, key), now).await {
                Ok(o) => {
                    let index = ids.purchase(o.purchase_id, o.amount);
                    format!(
                        "{:?} purchase {index} amount {} until {} balance {}",
                        o.applied, o.amount, o.expires_at, o.balance
                    )
                }
                Err(e) => format!("{e:?}"),
            }
        }
        Op::Pending { user, stars, promo, key } => {
            let provider = if stars { PaymentProviderKind::Stars } else { PaymentProviderKind::Crypto };
            match s.create_pending_purchase(request(user, "basic", 30, promo, key), provider, StdDuration::from_secs(600), now).await {
                Ok(o) => {
                    let index = ids.purchase(o.purchase_id, o.amount);
                    format!("{:?} purchase {index} amount {}", o.applied, o.amount)
                }
                Err(e) => format!("{e:?}"),
            }
        }
        Op::Finalize { purchase, stars, payment: p, exact } => {
            let Some(&(id, amount)) = ids.purchases.get(purchase) else { return "no purchase".into() };
            let paid = if exact { amount.max(Money::positive(1).unwrap()) } else { Money::positive(amount.minor() + 1).unwrap() };
            format!("{:?}", s.finalize_purchase(id, payment(stars, p, paid), now).await)
        }
        Op::Close { purchase, cancel } => {
            let Some(&(id, _)) = ids.purchases.get(purchase) else { return "no purchase".into() };
            format!(
                "{:?}",
                s.close_pending_purchase(id, if cancel { Closure::Cancelled } else { Closure::Expired }).await
            )
        }
        Op::Referral { purchase } => {
            let Some(&(id, _)) = ids.purchases.get(purchase) else { return "no purchase".into() };
            format!("{:?}", s.grant_referral_reward(id, Percent::new(10).unwrap(), now).await)
        }
        Op::Withdraw { user, amount } => {
            let requisites = Requisites::parse("card 0000 1111").unwrap();
            match s
                .create_withdrawal(
                    uid(user),
                    Money::parse(amount).unwrap(),
                    requisites,
                    Money::parse("100").unwrap(),
                    now,
                )
                .await
            {
                Ok(o) => {
                    ids.withdrawals.push(o.withdrawal);
                    format!("withdrawal {} balance {}", ids.withdrawals.len() - 1, o.balance)
                }
                Err(e) => format!("{e:?}"),
            }
        }
        Op::Decide { withdrawal, approve } => {
            let Some(&id) = ids.withdrawals.get(withdrawal) else { return "no withdrawal".into() };
            let verdict = if approve { Verdict::Approve } else { Verdict::Reject };
            let decision = WithdrawalDecision { withdrawal: id, admin: uid(99), verdict, reason: None, correlation_id: None };
            format!("{:?}", s.decide_withdrawal(decision, now).await)
        }
        Op::AutoRenewSwitch { user, on } => format!("{:?}", s.set_auto_renew(uid(user), on, now).await.unwrap()),
        Op::AutoRenew { days_later } => {
            match s.auto_renew_next(now + Duration::days(days_later), StdDuration::from_secs(86_400)).await.unwrap() {
                Some(RenewalOutcome::Renewed { user, amount, expires_at, .. }) => {
                    format!("renewed {user} {amount} until {expires_at}")
                }
                Some(RenewalOutcome::InsufficientFunds { user, .. }) => format!("insufficient {user}"),
                Some(RenewalOutcome::TariffUnavailable { user, .. }) => format!("unavailable {user}"),
                other => format!("{other:?}"),
            }
        }
        Op::Trial { user } => match s.activate_trial(uid(user), &TariffCode::parse("basic").unwrap(), 3, now).await {
            Ok(sub) => format!("trial until {}", sub.expires_at),
            Err(e) => format!("{e:?}"),
        },
        Op::Activate { user, ok } => {
            let Some(sub) = s.subscription(uid(user)).await.unwrap() else { return "no subscription".into() };
            let result = if ok {
                ActivationResult::Succeeded(PanelKey { panel_key_id: format!("a{user}"), access_uri: "vless://x".into() })
            } else {
                ActivationResult::Failed { error: "panel down".into() }
            };
            format!("{:?}", s.record_activation(sub.id, result, now).await.unwrap())
        }
        Op::Install { user, token } => {
            let Some(sub) = s.subscription(uid(user)).await.unwrap() else { return "no subscription".into() };
            let key = PanelKey { panel_key_id: format!("k{user}-{token}"), access_uri: "vless://y".into() };
            match s.install_reissued_key(sub.id, token, key, now).await {
                Ok(k) => format!("installed, replaced {:?}", k.replaced_panel_key_id),
                Err(e) => format!("{e:?}"),
            }
        }
        Op::ClaimFence { user, token } => {
            let Some(sub) = s.subscription(uid(user)).await.unwrap() else { return "no subscription".into() };
            format!("{:?}", s.claim_key_fence(sub.id, token, now).await)
        }
        Op::Claim { user, threshold } => {
            let Some(sub) = s.subscription(uid(user)).await.unwrap() else { return "no subscription".into() };
            let threshold = NoticeThreshold::Before { hours: threshold as u16, period_end: sub.expires_at };
            format!("{:?}", s.claim_notice(sub.id, NoticeKind::ExpiryReminder, threshold, now).await.unwrap())
        }
    }
}

async fn run(s: &impl Store, ops: &[Op]) -> Vec<String> {
    let mut ids = Created::default();
    s.register_user(uid(1), Language::Ru, None, t0()).await.unwrap();
    for user in 2..=USERS {
        s.register_user(uid(user), Language::En, Some(uid(user - 1)), t0()).await.unwrap();
    }
    let mut out = Vec::new();
    for op in ops {
        out.push(apply(s, op, &mut ids).await);
    }
    for user in 1..=USERS {
        let u = s.user(uid(user)).await.unwrap().unwrap();
        let sub = s
            .subscription(uid(user))
            .await
            .unwrap()
            .map(|s| (s.expires_at, s.activation_status, s.key_fence, s.auto_renew));
        out.push(format!("user {user}: balance {} trial {} subscription {sub:?}", u.balance, u.trial_used));
    }
    out
}

#[tokio::test]
async fn the_model_answers_like_postgresql() {
    for seed in 0..12 {
        let ops = ops(seed);
        let db = TestDb::new().await;
        let real = run(&db.store, &ops).await;
        let model = atlas_sim::store_host::SimStore::direct(Model::new());
        let modelled = run(&model, &ops).await;
        assert_eq!(real.len(), modelled.len(), "seed {seed}: the runs answered a different number of steps");
        for (i, (r, m)) in real.iter().zip(&modelled).enumerate() {
            assert_eq!(r, m, "seed {seed}, step {i}: {:?}", ops.get(i));
        }
    }
}

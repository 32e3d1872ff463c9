//! Admin actions on one user: find (by id or @username), credit or debit the balance
//! (AdminDebitBalance: amount → confirmation), reissue the key (the same reissue use case as
//! the user's own, on the Redis lock with fencing).

use serde::{Deserialize, Serialize};

use super::{Next, Step, Turn, audit, back, go};
use crate::bot::action::{Action, UserOp};
use crate::bot::subscription::reissue_for;
use crate::bot::text::{Msg, Word};
use crate::bot::withdraw::amount_error;
use crate::bot::{cancel_keys, confirm_keys};
use crate::domain::{Money, User, UserId, Username};
use crate::ports::store::{Accounts, AdminAdjustment, AdminTools, BalanceError, Direction, Subscriptions, UserQuery};
use crate::runtime::wiring::Adapters;

/// A credit or debit in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjust {
    pub direction: Direction,
    /// `None`: waiting for the user.
    pub user: Option<UserId>,
    /// `None`: waiting for the amount.
    pub amount: Option<Money>,
}

impl Adjust {
    pub fn credit() -> Adjust {
        Adjust { direction: Direction::Credit, user: None, amount: None }
    }

    pub fn debit() -> Adjust {
        Adjust { direction: Direction::Debit, user: None, amount: None }
    }

    pub fn expects_text(&self) -> bool {
        self.amount.is_none()
    }
}

fn word(direction: Direction) -> Word {
    Word(match direction {
        Direction::Credit => "credit",
        Direction::Debit => "debit",
    })
}

pub fn ask_user<A: Adapters>(turn: &mut Turn<'_, A>, step: Step) -> Next {
    let keys = cancel_keys(turn);
    turn.say_keys(Msg::AdminAskUser, keys);
    go(step)
}

/// The user an admin typed (an id, or a username as last seen); `None` said so.
async fn lookup<A: Adapters>(turn: &mut Turn<'_, A>, text: &str) -> Option<User> {
    let text = text.trim();
    let query = match text.parse::<i64>().ok().and_then(UserId::new) {
        Some(id) => Some(UserQuery::Id(id)),
        None => Username::parse(text).map(UserQuery::Username),
    };
    let found = match query {
        Some(query) => match turn.app.store.find_user(query).await {
            Ok(found) => found,
            Err(e) => {
                turn.failed("find_user", &e);
                return None;
            }
        },
        None => None,
    };
    if found.is_none() {
        let keys = cancel_keys(turn);
        turn.say_keys(Msg::AdminUserNotFound, keys);
    }
    found
}

pub async fn find<A: Adapters>(turn: &mut Turn<'_, A>, text: &str) -> Next {
    let Some(user) = lookup(turn, text).await else { return go(Step::FindUser) };
    audit(turn, "find_user", Some(user.id)).await;
    let until = match turn.app.store.subscription(user.id).await {
        Ok(sub) => sub.map(|s| s.expires_at.format("%Y-%m-%d %H:%M UTC").to_string()),
        Err(e) => {
            turn.failed("subscription", &e);
            return Next::Done;
        }
    };
    let msg = Msg::AdminUserInfo {
        id: user.id.get(),
        username: user.username.map_or_else(|| turn.text(&Msg::NoUsername), |u| format!("@{}", u.as_str())),
        balance: user.balance,
        until: until.unwrap_or_else(|| "—".to_owned()),
        banned: Word(if user.banned { "yes" } else { "no" }),
    };
    let op = |msg: Msg, op: UserOp| (msg, Action::AdminUser { op, user: user.id });
    let keys = vec![
        vec![
            op(Msg::BtnCredit, UserOp::Credit),
            op(Msg::BtnDebit, UserOp::Debit),
            op(Msg::BtnReissue, UserOp::Reissue),
        ],
        back().remove(0),
    ];
    turn.say_keys(msg, keys);
    Next::Done
}

/// A found user's button.
pub async fn op<A: Adapters>(turn: &mut Turn<'_, A>, op: UserOp, user: UserId) -> Next {
    match op {
        UserOp::Credit | UserOp::Debit => {
            let direction = if op == UserOp::Credit { Direction::Credit } else { Direction::Debit };
            ask_amount(turn, Adjust { direction, user: Some(user), amount: None })
        }
        UserOp::Reissue => reissue(turn, user).await,
    }
}

fn ask_amount<A: Adapters>(turn: &mut Turn<'_, A>, adjust: Adjust) -> Next {
    let user = adjust.user.expect("asked for after the user").get();
    let keys = cancel_keys(turn);
    turn.say_keys(Msg::AdminAskAmount { user }, keys);
    go(Step::Adjust(adjust))
}

pub async fn adjust_text<A: Adapters>(turn: &mut Turn<'_, A>, adjust: Adjust, text: &str) -> Next {
    if adjust.user.is_none() {
        let Some(user) = lookup(turn, text).await else { return go(Step::Adjust(adjust)) };
        return ask_amount(turn, Adjust { user: Some(user.id), ..adjust });
    }
    let user = adjust.user.expect("checked").get();
    match Money::parse(text) {
        Ok(amount) => {
            let keys = confirm_keys(turn);
            turn.say_keys(Msg::AdminConfirmAdjust { direction: word(adjust.direction), amount, user }, keys);
            go(Step::Adjust(Adjust { amount: Some(amount), ..adjust }))
        }
        Err(e) => {
            let keys = cancel_keys(turn);
            turn.say_keys(amount_error(&e), keys);
            go(Step::Adjust(adjust))
        }
    }
}

pub async fn adjust_confirm<A: Adapters>(turn: &mut Turn<'_, A>, adjust: Adjust) -> Next {
    let (Some(user), Some(amount)) = (adjust.user, adjust.amount) else { return crate::bot::stale(turn) };
    // The admin limit was counted at the gate.
    if !turn.coordinated_or_later() {
        return Next::Done;
    }
    let adjustment = AdminAdjustment {
        admin: turn.user(),
        user,
        amount,
        direction: adjust.direction,
        reason: "admin tools".to_owned(),
        correlation_id: Some(turn.correlation()),
        idempotency_key: Some(turn.key("adjust")),
    };
    let direction = word(adjust.direction);
    match turn.app.store.admin_adjust(adjustment, turn.now()).await {
        Ok(done) => {
            let msg = Msg::AdminAdjusted { direction, amount, user: user.get(), balance: done.balance };
            turn.say_keys(msg, back());
        }
        Err(BalanceError::InsufficientBalance) => {
            let balance = turn.app.store.find_user(UserQuery::Id(user)).await.ok().flatten().map(|u| u.balance);
            turn.say_keys(Msg::AdminAdjustInsufficient { balance: balance.unwrap_or(Money::ZERO) }, back());
        }
        Err(BalanceError::UnknownUser) => turn.say_keys(Msg::AdminUserNotFound, back()),
        Err(e) => turn.failed("admin_adjust", &e),
    }
    Next::Done
}

pub async fn reissue_text<A: Adapters>(turn: &mut Turn<'_, A>, text: &str) -> Next {
    let Some(user) = lookup(turn, text).await else { return go(Step::ReissueUser) };
    reissue(turn, user.id).await
}

async fn reissue<A: Adapters>(turn: &mut Turn<'_, A>, user: UserId) -> Next {
    audit(turn, "reissue_key", Some(user)).await;
    let (done, none) = (Msg::AdminReissued { user: user.get() }, Msg::AdminNoSubscription { user: user.get() });
    let mut made = None;
    let next = reissue_for(
        turn,
        user,
        |key| {
            made = Some(key);
            done
        },
        none,
    )
    .await;
    // The old key stopped working: the user gets the new one, not only the admin's word that
    // there is one (again when the request comes again: replies are at least once).
    if let Some(key) = made {
        turn.tell(user, Msg::ReissuedBySupport { uri: key.access_uri }, Vec::new()).await;
    }
    next
}

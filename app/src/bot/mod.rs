//! The bot's behaviour: one router over one state enum, one module per conversation. It knows
//! the world only through the ports of an [`App`] (store, coordination behind its failure
//! policy, messenger, VPN panel, payment provider, clock, ids), so the same code runs in
//! `atlas-bot run`, in the tests and in the simulation.
//!
//! [`handle`] is what the intake function runs for one update: it decodes the conversation
//! state (`coord::fsm`, versioned; a record that no longer decodes resets the user to the menu
//! with an apology), dispatches the update, sends the replies through the Messenger, and returns
//! the new state for the intake function to commit by CAS. Store calls that move money carry an
//! idempotency key derived from the step they confirm (`step:<user>:<nonce>:<operation>`, see
//! [`Turn::key`]), so an update handled twice, or a button pressed again after an earlier press
//! moved the money but never committed its state, moves money once; replies are at-least-once.

pub mod account;
pub mod action;
pub mod admin;
pub mod incoming;
pub mod menu;
mod pay;
pub mod purchase;
pub mod state;
mod subscription;
pub mod text;
pub mod withdraw;

use chrono::{DateTime, Utc};

use crate::coord::fsm::{self, Loaded};
use crate::coord::policy::RateVerdict;
use crate::domain::{IdempotencyKey, Language, UserId};
use crate::ports::Messenger;
use crate::ports::coordination::{FsmRecord, FsmWrite, LimitedAction};
use crate::ports::messenger::{Button, MessengerError, OutgoingMessage};
use crate::ports::store::Accounts;
use crate::runtime::wiring::{Adapters, App};
use action::{Action, StepInput};
use incoming::{Command, Incoming, Update};
use state::{Conversation, Record, Step};
use text::{Msg, render};

/// What a handler leaves the conversation in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Unchanged.
    Keep,
    /// Back at the main menu.
    Done,
    /// At this step, whose buttons carry this update's nonce.
    Go(Step),
    /// The step this update answered, changed: the buttons already sent (its nonce) still
    /// answer it, and their money operations keep their idempotency keys.
    Amend(Step),
    /// The update could not be handled now and must not be lost (a payment the store could not
    /// count): nothing is committed and the update is delivered again.
    Retry,
}

/// A message on its way: to whom, in which language, what.
struct Outgoing {
    to: UserId,
    message: OutgoingMessage,
}

/// One update being handled: the app, the update, the sender's language, whether coordination
/// answered, and the messages to send.
pub struct Turn<'a, A: Adapters> {
    pub app: &'a App<A>,
    pub update: &'a Update,
    pub lang: Language,
    /// `false` when Redis could not be asked: no state, and money actions are refused.
    pub coordinated: bool,
    /// Whether this update already registered the user (a fresh conversation does).
    registered: bool,
    /// The nonce of the step whose button this update pressed, if it pressed one.
    answering: Option<u32>,
    outbox: Vec<Outgoing>,
}

/// Rows of buttons as messages and the actions they ask for.
pub type Keys = Vec<Vec<(Msg, Action)>>;

impl<'a, A: Adapters> Turn<'a, A> {
    pub fn user(&self) -> UserId {
        self.update.user
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.app.clock.now()
    }

    pub fn is_admin(&self) -> bool {
        self.app.rules.is_admin(self.update.user)
    }

    /// The nonce this update gives the step it leads to.
    pub fn nonce(&self) -> u32 {
        self.update.id as u32
    }

    /// A button of the step this update leads to.
    pub fn step(&self, input: StepInput) -> Action {
        Action::Step { nonce: self.nonce(), input }
    }

    /// The idempotency key of one money operation of this update. An answer to a step (its
    /// confirm or pay button) is keyed by the step: every press of that message's button — the
    /// update redelivered, or pressed again while an earlier press is paused or died after the
    /// money moved — asks for the same operation and gets its first result. Anything else (an
    /// admin's decision button, which the store decides only once anyway) is keyed by the update.
    pub fn key(&self, operation: &str) -> IdempotencyKey {
        self.key_at(self.answering, operation)
    }

    /// The key of `operation` at the step `nonce` (by the update when there is none).
    fn key_at(&self, nonce: Option<u32>, operation: &str) -> IdempotencyKey {
        let key = match nonce {
            Some(nonce) => format!("step:{}:{nonce}:{operation}", self.update.user),
            None => format!("upd:{}:{operation}", self.update.id),
        };
        IdempotencyKey::parse(&key).expect("a key of fixed shape")
    }

    /// The key of an order's purchase: one for the order whatever the way to pay, so that an
    /// order is paid once, one way (the store refuses another way under it). The order began at
    /// the step `began` (a promo code entered at the payment step keeps its order), or else at
    /// the step this update answers.
    pub fn purchase_key(&self, began: Option<u32>) -> IdempotencyKey {
        self.key_at(self.order_began(began), "buy")
    }

    /// The step an order began at: `began`, or the step this update answers.
    pub fn order_began(&self, began: Option<u32>) -> Option<u32> {
        began.or(self.answering)
    }

    /// The correlation id of this update (in logs and the admin audit log).
    pub fn correlation(&self) -> String {
        format!("upd:{}", self.update.id)
    }

    pub fn text(&self, msg: &Msg) -> String {
        render(self.lang, msg)
    }

    fn message(&self, lang: Language, msg: &Msg, keys: Keys) -> OutgoingMessage {
        outgoing(lang, msg, keys)
    }

    pub fn say(&mut self, msg: Msg) {
        self.say_keys(msg, Vec::new());
    }

    pub fn say_keys(&mut self, msg: Msg, keys: Keys) {
        let message = self.message(self.lang, &msg, keys);
        self.outbox.push(Outgoing { to: self.update.user, message });
    }

    /// A message to another user, in their language; not to one who blocked the bot.
    pub async fn tell(&mut self, to: UserId, msg: Msg, keys: Keys) {
        let Some(lang) = reachable_language(&self.app.store, to).await else {
            tracing::info!(to = to.get(), "not told: the bot is blocked");
            return;
        };
        let message = self.message(lang, &msg, keys);
        self.outbox.push(Outgoing { to, message });
    }

    /// The main menu.
    pub fn menu(&mut self) {
        let keys = menu::keys(self.is_admin());
        self.say_keys(Msg::Menu, keys);
    }

    /// Something failed that the user cannot fix: logged with its cause, and a plain apology.
    pub fn failed(&mut self, what: &str, error: &dyn std::fmt::Display) {
        self.failed_saying(what, error, Msg::Failed);
    }

    /// [`Turn::failed`], telling the user `msg` instead of the plain apology.
    pub fn failed_saying(&mut self, what: &str, error: &dyn std::fmt::Display, msg: Msg) {
        tracing::error!(operation = what, error = %error, "update failed");
        self.say(msg);
    }

    /// Counts one attempt of `action`; says why when it is refused.
    pub async fn allow(&mut self, action: LimitedAction) -> bool {
        self.admit(action, action.name()).await.is_ok()
    }

    /// Counts one attempt of `action`; when it is refused, says why and gives where the
    /// conversation goes: it ends on "too many attempts", and stays where it is on "try again in
    /// a minute" (the same button then works).
    /// The attempt is named by `operation` as the idempotency key of what it guards: the same
    /// press of a step, or the same update delivered again, is one attempt; another operation of
    /// the same step (its other payment method) is another.
    async fn admit(&mut self, action: LimitedAction, operation: &str) -> Result<(), Next> {
        let attempt = self.key(&format!("limit:{}:{operation}", action.name()));
        match self.app.coordination.check_rate(self.update.user, action, attempt.as_str()).await {
            RateVerdict::Allowed => Ok(()),
            RateVerdict::Denied { retry_after } => {
                tracing::info!(event = "RATE_LIMITED", action = action.name(), "attempt refused");
                metrics::counter!("atlas_rate_limited_total", "action" => action.name()).increment(1);
                self.say(Msg::RateLimited { minutes: retry_after.as_secs().div_ceil(60).max(1) });
                Err(Next::Done)
            }
            RateVerdict::TryLater => {
                self.say(Msg::TryLater);
                Err(Next::Keep)
            }
        }
    }

    /// The gate of every action that moves money: refused without coordination (Redis
    /// unreachable), and counted against its limit. Refused, it gives where the conversation
    /// goes (see [`Turn::admit`]): the user told to try again in a minute finds the step as it
    /// was (found by the simulation's swarm: a press refused while Redis restarted ended the
    /// purchase, and pressing the same button again was "no longer active").
    /// `operation` is the name of the money operation's idempotency key ([`Turn::key`]).
    pub async fn allow_money(&mut self, action: LimitedAction, operation: &str) -> Result<(), Next> {
        if !self.coordinated_or_later() {
            return Err(Next::Keep);
        }
        self.admit(action, operation).await
    }

    /// Money moves only with coordination: without it (Redis unreachable) the user is told to
    /// try again later. For actions whose limit was already counted (an admin's, at the gate).
    pub fn coordinated_or_later(&mut self) -> bool {
        if !self.coordinated {
            self.say(Msg::TryLater);
        }
        self.coordinated
    }

    /// Sends the replies; `false` when one may not have reached its user for a reason that
    /// passes (Telegram's flood control outlasted the send budget, a timeout): then the update
    /// is handed back to be delivered again, and its replies sent again (at least once).
    async fn send_all(&mut self) -> bool {
        let mut delivered = true;
        for out in std::mem::take(&mut self.outbox) {
            match self.app.messenger.send(out.to, out.message).await {
                Ok(_) => {}
                Err(MessengerError::ChatUnreachable) => self.unreachable(out.to).await,
                Err(e @ (MessengerError::RetryAfter(_) | MessengerError::Timeout)) => {
                    tracing::warn!(event = "REPLY_NOT_DELIVERED", to = out.to.get(), error = %e, "the update will come again");
                    delivered = false;
                }
                Err(e) => tracing::warn!(to = out.to.get(), error = %e, "reply not sent"),
            }
        }
        delivered
    }

    /// `user` blocked the bot: nobody writes to them until they come back.
    pub async fn unreachable(&self, user: UserId) {
        tracing::info!(event = "USER_UNREACHABLE", to = user.get(), "not sent: the bot is blocked");
        if let Err(e) = self.app.store.set_reachable(user, false, self.now()).await {
            tracing::warn!(error = %e, "reachability not recorded");
        }
    }
}

/// The language to write to `to` in, or `None` when they blocked the bot. A user the store
/// does not know, or cannot read now, gets the default language.
pub async fn reachable_language<S: Accounts>(store: &S, to: UserId) -> Option<Language> {
    match store.user(to).await {
        Ok(Some(user)) if user.blocked => None,
        Ok(Some(user)) => Some(user.language),
        Ok(None) => Some(Language::default()),
        Err(e) => {
            tracing::warn!(to = to.get(), error = %e, "user not read; told in the default language");
            Some(Language::default())
        }
    }
}

/// `msg` in `lang` with its buttons, as Telegram gets it.
pub fn outgoing(lang: Language, msg: &Msg, keys: Keys) -> OutgoingMessage {
    let keyboard = keys
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|(label, action)| Button { label: text::label(lang, &label), callback_data: action.data() })
                .collect()
        })
        .collect();
    OutgoingMessage { text: render(lang, msg), keyboard }
}

/// The span of all of one update's work (the intake function's begin and commit included): every
/// log line inside carries the update's correlation id.
pub fn span(update: &Update) -> tracing::Span {
    tracing::info_span!(
        "update",
        update_id = update.id,
        user_id = update.user.get(),
        correlation_id = %format!("upd:{}", update.id)
    )
}

/// Handles one update: the function the intake function runs (inside the update's [`span`]).
/// `fsm` is the record the begin returned (`None` when the update is handled degraded, without
/// Redis).
pub async fn handle<A: Adapters>(app: &App<A>, update: &Update, fsm: Option<&FsmRecord>) -> FsmWrite {
    handle_in_span(app, update, fsm).await
}

/// Answers a pre-checkout query. Telegram waits at most 10 seconds for it, and it needs no
/// conversation state (only the store: is the order still payable by this user at this price),
/// so it does not wait for the chat's lease: it is answered at once, by whichever instance
/// receives it. Answering a redelivered query again is harmless (Telegram refuses the second).
pub async fn answer_pre_checkout<A: Adapters>(app: &App<A>, update: &Update) {
    let Incoming::PreCheckout { query_id, payload, currency, total } = &update.incoming else {
        return;
    };
    let mut turn = Turn {
        app,
        update,
        lang: update.language.unwrap_or_default(),
        coordinated: false,
        registered: false,
        answering: None,
        outbox: Vec::new(),
    };
    purchase::pre_checkout(&mut turn, query_id, payload, currency, *total).await;
}

async fn handle_in_span<A: Adapters>(app: &App<A>, update: &Update, fsm: Option<&FsmRecord>) -> FsmWrite {
    let loaded = fsm.map_or(Loaded::Fresh, fsm::decode::<Record>);
    let mut turn = Turn {
        app,
        update,
        lang: Language::default(),
        coordinated: fsm.is_some(),
        registered: false,
        answering: None,
        outbox: Vec::new(),
    };
    let (before, reset) = match loaded {
        Loaded::Resumed(record) => (Some(record), false),
        Loaded::Fresh => (None, false),
        Loaded::Reset => (None, true),
    };
    let mut record = match &before {
        Some(record) => record.clone(),
        None => menu::register(&mut turn).await,
    };
    turn.lang = record.lang;
    if reset {
        tracing::info!(event = "FSM_RESET", "a stored conversation no longer decodes; back to the menu");
        turn.say(Msg::ResetNotice);
        record.conversation = None;
    }
    let mut next = dispatch(&mut turn, &mut record).await;
    if matches!(next, Next::Go(_) | Next::Amend(_)) && !turn.coordinated {
        // Without Redis no conversation can be kept: a step that would wait for the user's next
        // answer is not begun (its question would be asked and the answer not understood); the
        // user is told to try again in a minute. (Found by the simulation's swarm: a press
        // served during a partition from Redis.)
        turn.outbox.clear();
        turn.say(Msg::TryLater);
        next = Next::Keep;
    }
    // Leaving a purchase from the balance whose outcome is unknown any other way than by its own
    // buttons (a menu button, a command) is not silent: the debit may have landed.
    // (/cancel cancels as its Cancel button does, which says so itself.)
    let unconfirmed =
        before.as_ref().and_then(|r| r.conversation.as_ref()).is_some_and(|c| c.step.unconfirmed_purchase());
    let cancels = matches!(update.incoming, Incoming::Command { command: Command::Cancel, .. });
    if unconfirmed && !cancels && turn.answering.is_none() && matches!(next, Next::Done | Next::Go(_)) {
        turn.say(Msg::CancelledUnconfirmed);
        turn.outbox.rotate_right(1);
    }
    match next {
        Next::Retry => {
            turn.send_all().await;
            return FsmWrite::Retry;
        }
        Next::Keep => {}
        Next::Done => record.conversation = None,
        Next::Go(step) => record.conversation = Some(Conversation { nonce: turn.nonce(), step }),
        Next::Amend(step) => {
            // Only a step's own button amends it (`answering` is set).
            debug_assert!(turn.answering.is_some(), "an amended step answers a step");
            let nonce = turn.answering.unwrap_or_else(|| turn.nonce());
            record.conversation = Some(Conversation { nonce, step });
        }
    }
    record.lang = turn.lang;
    let write = if !turn.coordinated || before.as_ref() == Some(&record) {
        FsmWrite::Keep
    } else {
        match fsm::encode(&record) {
            Ok(bytes) => FsmWrite::Set(bytes),
            Err(e) => {
                // Its replies would show buttons with no state behind them: they are not sent.
                tracing::warn!(error = %e, "conversation state not stored; kept as it was");
                turn.outbox.clear();
                turn.say(Msg::TooLongToKeep);
                FsmWrite::Keep
            }
        }
    };
    if !turn.send_all().await {
        // Handed back whole: its money operations are keyed, its replies are at least once.
        return FsmWrite::Retry;
    }
    write
}

async fn dispatch<A: Adapters>(turn: &mut Turn<'_, A>, record: &mut Record) -> Next {
    let conversation = record.conversation.clone();
    match turn.update.incoming.clone() {
        Incoming::Command { command, args } => match command {
            Command::Start => menu::start(turn, &args).await,
            // /cancel ends the conversation the way its Cancel button does (a waiting payment is
            // closed); /menu and /start leave a waiting invoice open, to be paid or to expire.
            Command::Cancel if let Some(conversation) = conversation => cancel(turn, conversation.step).await,
            Command::Menu | Command::Cancel | Command::Help => {
                let msg = if command == Command::Help { Msg::Help } else { Msg::Menu };
                if msg != Msg::Menu {
                    turn.say(msg);
                }
                turn.menu();
                Next::Done
            }
            Command::Admin => admin::open(turn).await,
            Command::Unknown => {
                turn.say(Msg::UnknownCommand);
                Next::Keep
            }
        },
        Incoming::Callback { query_id, data, .. } => {
            if let Err(e) = turn.app.messenger.answer_callback(&query_id, None).await {
                tracing::warn!(error = %e, "callback not acknowledged");
            }
            callback(turn, record, conversation, &data).await
        }
        // Without Redis the conversation cannot be read: what needs it waits for Redis.
        Incoming::Text(_) | Incoming::Unsupported(_) if !turn.coordinated => {
            turn.say(Msg::TryLater);
            Next::Keep
        }
        Incoming::Text(text) => match conversation.map(|c| c.step) {
            Some(step) => text_input(turn, step, &text).await,
            None => not_understood(turn),
        },
        Incoming::Unsupported(_) => match conversation.map(|c| c.step) {
            Some(step) if expects_text(&step) => {
                turn.say(Msg::SendText);
                Next::Keep
            }
            _ => not_understood(turn),
        },
        Incoming::PreCheckout { query_id, payload, currency, total } => {
            purchase::pre_checkout(turn, &query_id, &payload, &currency, total).await;
            Next::Keep
        }
        Incoming::Paid(payment) => purchase::paid(turn, conversation.map(|c| c.step), &payment).await,
        Incoming::Membership { blocked } => {
            let event = if blocked { "USER_BLOCKED_BOT" } else { "USER_RETURNED" };
            tracing::info!(event, "membership changed");
            turn.outbox.clear();
            if let Err(e) = turn.app.store.set_reachable(turn.user(), !blocked, turn.now()).await {
                tracing::warn!(error = %e, "reachability not recorded");
            }
            Next::Keep
        }
    }
}

fn not_understood<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    turn.say(Msg::NotUnderstood);
    turn.menu();
    Next::Keep
}

/// A button from an earlier message or conversation, or forged: said so, and the conversation
/// in progress (if any) goes on.
fn stale<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    turn.say(Msg::StaleButton);
    turn.menu();
    Next::Keep
}

/// Whether the step waits for the user to type something.
fn expects_text(step: &Step) -> bool {
    match step {
        Step::PromoInput => true,
        Step::Purchase(s) => s.expects_text(),
        Step::TopUp(s) => s.expects_text(),
        Step::Withdraw(s) => s.expects_text(),
        Step::Admin(s) => s.expects_text(),
    }
}

async fn text_input<A: Adapters>(turn: &mut Turn<'_, A>, step: Step, text: &str) -> Next {
    match step {
        Step::PromoInput => purchase::promo_entered(turn, None, text).await,
        Step::Purchase(step) => purchase::text(turn, step, text).await,
        Step::TopUp(step) => account::top_up_text(turn, step, text).await,
        Step::Withdraw(step) => withdraw::text(turn, step, text).await,
        Step::Admin(step) => admin::text(turn, step, text).await,
    }
}

async fn callback<A: Adapters>(
    turn: &mut Turn<'_, A>,
    record: &mut Record,
    conversation: Option<Conversation>,
    data: &str,
) -> Next {
    let Some(action) = Action::parse(data) else {
        tracing::info!(event = "CALLBACK_REFUSED", data_len = data.len(), "malformed or unknown callback data");
        return stale(turn);
    };
    match action {
        Action::Nav(nav) => menu::nav(turn, record, nav).await,
        Action::Admin(nav) => admin::nav(turn, nav).await,
        Action::Decide { withdrawal, approve } => admin::decide(turn, withdrawal, approve).await,
        Action::AdminUser { op, user } => admin::user_op(turn, op, user).await,
        Action::Step { .. } if !turn.coordinated => {
            turn.say(Msg::TryLater);
            Next::Keep
        }
        Action::Check(_) if !turn.coordinated => {
            turn.say(Msg::TryLater);
            Next::Keep
        }
        Action::Check(payable) => {
            let waiting = conversation.is_some_and(|c| c.step.waits_for(payable));
            pay::check(turn, payable, waiting).await
        }
        Action::Step { nonce, input } => match conversation {
            Some(c) if c.nonce == nonce => {
                turn.answering = Some(nonce);
                step_input(turn, c.step, input).await
            }
            _ => stale(turn),
        },
    }
}

async fn step_input<A: Adapters>(turn: &mut Turn<'_, A>, step: Step, input: StepInput) -> Next {
    if input == StepInput::Cancel {
        return cancel(turn, step).await;
    }
    match step {
        Step::Purchase(step) => purchase::input(turn, step, input).await,
        Step::TopUp(step) => account::top_up_input(turn, step, input).await,
        Step::Withdraw(step) => withdraw::input(turn, step, input).await,
        Step::Admin(step) => admin::input(turn, step, input).await,
        Step::PromoInput => stale(turn),
    }
}

/// Cancel, from any step: a pending payment is closed first (its promo use given back), unless
/// it turns out to be paid (then the user hears that instead) or cannot be decided now (then the
/// conversation waits, and the user is asked to try again).
async fn cancel<A: Adapters>(turn: &mut Turn<'_, A>, step: Step) -> Next {
    let cancelled = match step {
        Step::Purchase(step) => purchase::cancel(turn, step).await,
        Step::TopUp(step) => account::cancel_top_up(turn, step).await,
        _ => pay::Cancelled::Closed,
    };
    match cancelled {
        pay::Cancelled::NotNow => return Next::Keep,
        pay::Cancelled::Closed => turn.say(Msg::Cancelled),
        pay::Cancelled::WasPaid | pay::Cancelled::ClosedUnsure => {}
    }
    turn.menu();
    Next::Done
}

/// The buttons under a step's question: confirm and cancel.
pub fn confirm_keys<A: Adapters>(turn: &Turn<'_, A>) -> Keys {
    vec![vec![(Msg::BtnConfirm, turn.step(StepInput::Confirm)), (Msg::BtnCancel, turn.step(StepInput::Cancel))]]
}

/// A lone cancel button under a question that waits for text.
pub fn cancel_keys<A: Adapters>(turn: &Turn<'_, A>) -> Keys {
    vec![vec![(Msg::BtnCancel, turn.step(StepInput::Cancel))]]
}

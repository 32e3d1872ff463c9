//! The invariants of a whole-bot run, judged from what users saw (the fake Bot API's record of
//! every call the bot made), what the fake providers recorded, the users' own record of what they
//! did, and the database at the end (DESIGN.md §5).

use std::collections::BTreeMap;
use std::time::Duration;

use atlas::domain::KeyLabel;

use crate::bot_api::{Call, HandedBack};
use crate::history::{Event, FaultEvent, History, JourneyEnd};
use crate::scenario::{Invariant, Journey};

/// What a whole-bot run left behind, beside its history.
pub struct BotRecords {
    /// Every Bot API call the bot made, in order.
    pub calls: Vec<Call>,
    /// Every key the panel created, in order, with when and for which instance.
    pub created_keys: Vec<crate::fakes::outline::Made>,
    /// Each subscription's owner (subscription id as written in key labels).
    pub owners: BTreeMap<String, i64>,
    /// The database's findings (`Model::money_findings`, `promo_findings`, `open_work`).
    pub money: Vec<String>,
    /// The provider payments the store counted: (provider, payment id, user, amount).
    pub payments: Vec<(&'static str, String, atlas::domain::UserId, i64)>,
    /// What Crypto Pay holds as paid: (invoice id, amount in roubles as it wrote it).
    pub paid_invoices: Vec<(i64, String)>,
    /// The Stars charges refunded.
    pub refunded: Vec<String>,
    /// Every promo check the store saw: (user, code, simulated time).
    pub promo_checks: Vec<(i64, String, Duration)>,
    /// The updates the bot handed back to Telegram (a refused webhook delivery, an update its
    /// poller did not confirm), with when.
    pub handed_back: Vec<HandedBack>,
    /// The updates Telegram delivered again after a 2xx, with when.
    pub duplicates: Vec<HandedBack>,
    pub promo: Vec<String>,
    pub open_work: Vec<String>,
    /// Orders closed as expired sooner than their opener meant (`Model::orders_cut_short`).
    pub cut_short: Vec<String>,
    /// Every withdrawal request in the store: (request id, user).
    pub withdrawals: Vec<(i64, i64)>,
    /// The text of every broadcast job in the store.
    pub broadcasts: Vec<String>,
    /// Each subscription's active keys in the store at the end (subscription id, panel key ids:
    /// one).
    pub active_keys: BTreeMap<String, Vec<String>>,
    /// The row id of every key the store recorded (by panel key id): the order they were written.
    pub key_rows: BTreeMap<String, i64>,
}

/// The promo limit of `LimitedAction::PromoAttempt`: 10 checks a minute per user.
const PROMO_CHECKS_PER_MINUTE: usize = 10;
/// How much later than the limiter last counted an attempt its check may reach the store (the
/// store call after the rate check; an attempt run again is counted again at its new time, so
/// the lag is one handler's, not a redelivery's).
const ADMISSION_LAG: Duration = Duration::from_secs(5);
/// The window the store's checks are judged in: a minute less that lag.
const PROMO_WINDOW: Duration = Duration::from_secs(60 - ADMISSION_LAG.as_secs());

/// Longer than any handler runs in a whole-bot run (its lease at most): a key made this long
/// before its instance was lost may be the dying handler's.
const HANDLER_BOUND: Duration = Duration::from_secs(15);

/// The button under a crypto invoice that asks the bot whether the payment arrived.
pub const CHECK_BUTTON: &str = "I paid, check";

/// Messages only the background workers send, each of which a user must get at most once.
const WORKER_MESSAGES: [&str; 6] = [
    "Your key is ready",
    "Your subscription ends in",
    "Your free trial ends in",
    "free trial is over",
    "was renewed",
    "could not be renewed",
];

pub fn check(invariant: Invariant, history: &History, records: &BotRecords) -> Option<String> {
    match invariant {
        Invariant::NoUpdateTwice => no_update_twice(history, records),
        Invariant::RepliesInOrder => replies_in_order(history, records),
        Invariant::FsmSurvivesRestart => fsm_survives_restart(history),
        Invariant::Liveness => liveness(history, records),
        Invariant::RateLimitsHold => rate_limits_hold(records),
        Invariant::SingleLeaderEffects => single_leader_effects(records),
        Invariant::LedgerConserved => first(&records.money).or_else(|| payments_once(history, records)),
        Invariant::PromoWithinLimits => first(&records.promo),
        Invariant::NoDoubleEffect => no_double_effect(history, records),
        Invariant::NoDoubleReissue => keys_never_go_back(records),
        Invariant::HandlersNeverOverlap | Invariant::LeaderFailover | Invariant::MoneyOnce => {
            Some(format!("{} is not checked on the whole bot", invariant.name()))
        }
    }
}

fn first(findings: &[String]) -> Option<String> {
    let (head, rest) = findings.split_first()?;
    Some(if rest.is_empty() { head.clone() } else { format!("{head} (and {} more)", rest.len()) })
}

fn is(call: &Call, method: &str) -> bool {
    call.method.eq_ignore_ascii_case(method)
}

/// A moment an instance lost what it was doing (`losses`) or froze or woke (`breaks`); with no
/// instance, Redis lost its data (every instance's updates at once).
#[derive(Clone, Copy, Debug)]
struct Break {
    at: Duration,
    /// Until when what the lost process did before it went may still show (`at` when nothing
    /// can): for a SIGTERM, the end of its drain (a reply may go out in the drain, its commit
    /// not); for either loss, the end of a freeze it was lost in, and a moment's slack (what it
    /// sent before going was held, and arrives then).
    until: Duration,
    instance: Option<usize>,
}

impl Break {
    fn at(at: Duration, instance: Option<usize>) -> Break {
        Break { at, until: at, instance }
    }

    /// Whether it excuses two effects at `from` and `to`, made by `who` (the earlier's maker
    /// first; one whose instance is unknown may be any): it falls between them and befell one of
    /// their makers (a crash of one instance excuses nothing another does twice), or the earlier
    /// effect is the lost process's own, showing after it went (`until`).
    fn excuses(&self, from: Duration, to: Duration, who: &[Option<usize>]) -> bool {
        let befell = |w: &Option<usize>| self.instance.is_none() || w.is_none() || *w == self.instance;
        let between = from <= self.at && self.at <= to && who.iter().any(befell);
        let its_own_late = self.at <= from && from <= self.until && who.first().is_some_and(befell);
        between || its_own_late
    }
}

/// The times at which an instance lost what it was doing (a crash, a SIGTERM, Redis losing its
/// data): an update in flight then may be handled again, which is the design (at least once).
fn losses(history: &History) -> Vec<Break> {
    let freezes: Vec<(usize, Duration, Duration)> = history
        .records
        .iter()
        .filter_map(|r| match r.event {
            Event::Fault(FaultEvent::Frozen { instance, for_ms }) => {
                Some((instance, r.at, r.at + Duration::from_millis(for_ms)))
            }
            _ => None,
        })
        .collect();
    history
        .records
        .iter()
        .filter_map(|r| {
            let (i, gone) = match r.event {
                Event::Fault(FaultEvent::Crashed(i)) => (i, r.at),
                Event::Fault(FaultEvent::Stopped(i)) => (i, r.at + super::hosts::SHUTDOWN_TIMEOUT),
                Event::Fault(FaultEvent::RedisRestarted { lose_data: true }) => return Some(Break::at(r.at, None)),
                _ => return None,
            };
            let frozen = freezes.iter().filter(|(f, from, to)| *f == i && *from <= gone && *to >= r.at);
            let until = frozen.map(|(_, _, to)| *to + THAW_SLACK).fold(gone, Duration::max);
            Some(Break { at: r.at, until, instance: Some(i) })
        })
        .collect()
}

/// How long after a freeze ends what the instance sent while frozen may still be arriving.
const THAW_SLACK: Duration = Duration::from_secs(1);

/// `losses`, and the start and end of every pause: a paused instance's lease runs out under its
/// handler, another instance handles the update again, and what the paused one sent meanwhile
/// arrives when it wakes, so a second answer or key on either side of a pause's start or end is
/// at least once too. (Nothing is lost at a pause: a key made just before one is not excused.)
fn breaks(history: &History, losses: &[Break]) -> Vec<Break> {
    let mut breaks = losses.to_vec();
    for r in &history.records {
        if let Event::Fault(FaultEvent::Frozen { instance, for_ms }) = r.event {
            let instance = Some(instance);
            breaks.push(Break::at(r.at, instance));
            breaks.push(Break::at(r.at + Duration::from_millis(for_ms), instance));
        }
    }
    breaks
}

/// Whether an instance lost Redis at some point of the run (a partition, held links, a pause, a
/// restart): it then handled updates degraded, without dedupe.
fn redis_disturbed(history: &History) -> bool {
    history.records.iter().any(|r| {
        matches!(
            r.event,
            Event::Fault(
                FaultEvent::Partitioned(_)
                    | FaultEvent::Held(_)
                    | FaultEvent::Frozen { .. }
                    | FaultEvent::RedisRestarted { .. }
            )
        )
    })
}

/// Who pressed each button: query id → (user, label, order of the press among the user's).
fn presses(history: &History) -> BTreeMap<String, (i64, String, usize)> {
    let mut count: BTreeMap<i64, usize> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for record in &history.records {
        if let Event::Pressed { user, query, label } = &record.event {
            let n = count.entry(*user).or_default();
            out.insert(query.clone(), (*user, label.clone(), *n));
            *n += 1;
        }
    }
    out
}

/// Each payment a user made at a provider was counted by the store once, for that user and (for
/// Crypto Pay) that amount; the store counted nothing the providers did not see paid (besides
/// the run's seed top-ups). Refunded Stars payments are not counted.
fn payments_once(history: &History, records: &BotRecords) -> Option<String> {
    let made: BTreeMap<(&str, &str), i64> = history
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Paid { user, provider, id } => Some(((*provider, id.as_str()), *user)),
            _ => None,
        })
        .collect();
    let invoices: BTreeMap<String, &str> =
        records.paid_invoices.iter().map(|(id, amount)| (id.to_string(), amount.as_str())).collect();
    for (provider, id, user, amount) in &records.payments {
        if id.starts_with("seed-") {
            continue;
        }
        match made.get(&(*provider, id.as_str())) {
            None => return Some(format!("the store counted {provider} payment {id} that no user made")),
            Some(payer) if *payer != user.get() => {
                return Some(format!("{provider} payment {id} of user {payer} was counted for user {user}"));
            }
            Some(_) => {}
        }
        if *provider == "crypto" {
            let written = invoices.get(id).copied().unwrap_or("none");
            let minor = atlas::domain::Money::parse(written).map(|m| m.minor());
            if minor != Ok(*amount) {
                return Some(format!("crypto payment {id}: {amount} counted, the invoice says {written} roubles"));
            }
        }
    }
    if let Some((_, id, _, _)) =
        records.payments.iter().find(|(provider, id, _, _)| *provider == "stars" && records.refunded.contains(id))
    {
        return Some(format!("Stars payment {id} was counted and also refunded"));
    }
    let counted: std::collections::BTreeSet<(&str, &str)> =
        records.payments.iter().map(|(provider, id, _, _)| (*provider, id.as_str())).collect();
    made.keys()
        .find(|key| !counted.contains(*key) && !records.refunded.iter().any(|r| r == key.1))
        .map(|(provider, id)| format!("{provider} payment {id} was made but never counted"))
}

/// An update is handled once: each button press (callback query) is answered once, unless the
/// instance handling it was lost between the two answers or the bot handed it back to Telegram
/// between them (a refused webhook delivery, an update the poller fetched again: at least once,
/// by design). (Pre-checkout queries are answered
/// outside the protocol by design: a read-only check that must meet Telegram's 10 s, and a
/// second answer changes nothing.)
fn no_update_twice(history: &History, records: &BotRecords) -> Option<String> {
    let breaks = breaks(history, &losses(history));
    let presses = presses(history);
    let mut answered: BTreeMap<String, (Duration, Option<usize>)> = BTreeMap::new();
    for call in &records.calls {
        if !is(call, "answerCallbackQuery") {
            continue;
        }
        let Some(id) = call.body["callback_query_id"].as_str() else { continue };
        if let Some((before, by)) = answered.insert(id.to_owned(), (call.at, call.from)) {
            // Handed back (a 503, no answer in time) or the instance of either answer lost or
            // frozen: at least once, by design; a second answer then is not a second application.
            let between = |at: &Duration| before <= *at && *at <= call.at;
            let excused = records.handed_back.iter().any(|b| b.query.as_deref() == Some(id) && between(&b.at))
                || breaks.iter().any(|b| b.excuses(before, call.at, &[by, call.from]));
            if !excused {
                let who = presses.get(id).map_or_else(String::new, |(u, l, _)| format!(" (user {u} pressed {l:?})"));
                return Some(format!(
                    "query {id}{who} answered at {:.3}s and again at {:.3}s with no instance lost between: \
                     its update was handled twice",
                    before.as_secs_f64(),
                    call.at.as_secs_f64()
                ));
            }
        }
    }
    None
}

/// A user's button presses are answered in the order they were pressed.
fn replies_in_order(history: &History, records: &BotRecords) -> Option<String> {
    let presses = presses(history);
    let mut latest: BTreeMap<i64, (usize, String)> = BTreeMap::new();
    let mut answered = std::collections::BTreeSet::new();
    for call in records.calls.iter().filter(|c| is(c, "answerCallbackQuery")) {
        let Some(id) = call.body["callback_query_id"].as_str() else { continue };
        // A second answer to one press is `no_update_twice`'s to judge.
        if !answered.insert(id) {
            continue;
        }
        let Some((user, label, order)) = presses.get(id) else { continue };
        if let Some((newest, newer)) = latest.get(user)
            && order < newest
        {
            return Some(format!(
                "user {user}: press {id} ({label:?}) answered at {:.3}s, after the later press {newer}",
                call.at.as_secs_f64()
            ));
        }
        if latest.get(user).is_none_or(|(newest, _)| order >= newest) {
            latest.insert(*user, (*order, id.to_owned()));
        }
    }
    None
}

fn journeys(history: &History) -> impl Iterator<Item = (i64, Journey, u32, &JourneyEnd)> {
    history.records.iter().filter_map(|r| match &r.event {
        Event::Journey { user, journey, attempt, end } => Some((*user, *journey, *attempt, end)),
        _ => None,
    })
}

/// A conversation goes on where it was, whichever instance takes the next step: no user is
/// left waiting in the middle of one (step 0 is the /start that opens every journey).
fn fsm_survives_restart(history: &History) -> Option<String> {
    journeys(history).find_map(|(user, journey, attempt, end)| match end {
        JourneyEnd::Stuck { step, waiting_for } if *step > 0 => Some(format!(
            "user {user}, {} (try {attempt}): the conversation was lost at step {step}, waiting for {waiting_for}",
            journey.name()
        )),
        _ => None,
    })
}

/// The run's broadcast, if an admin queued one: its text, and how many times each user who
/// used the bot received it (zero included).
fn broadcast_received(history: &History, records: &BotRecords) -> Option<(String, BTreeMap<i64, usize>)> {
    let queued = journeys(history).any(|(_, j, _, end)| j == Journey::Broadcast && *end == JourneyEnd::Done);
    let text = history.records.iter().find_map(|r| match &r.event {
        Event::Said { what, .. } if what.starts_with(super::actors::BROADCAST_PREFIX) => Some(what.clone()),
        _ => None,
    })?;
    if !queued {
        return None;
    }
    let mut received: BTreeMap<i64, usize> = history
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Said { user, .. } | Event::Pressed { user, .. } => Some((*user, 0)),
            _ => None,
        })
        .collect();
    for call in records.calls.iter().filter(|c| is(c, "sendMessage")) {
        if call.body["text"].as_str() == Some(text.as_str()) {
            *received.entry(call.body["chat_id"].as_i64().unwrap_or(0)).or_default() += 1;
        }
    }
    Some((text, received))
}

/// Every journey reached its end (on the second try at worst, the third after the bot said
/// twice it lost the user's place), a queued broadcast reached every user, no order stopped
/// waiting for its payment before its time, and nothing is left pending in the database: every
/// withdrawal decided, every running subscription with its key.
fn liveness(history: &History, records: &BotRecords) -> Option<String> {
    let mut last: BTreeMap<(i64, usize), (Journey, &JourneyEnd)> = BTreeMap::new();
    let mut nth: BTreeMap<i64, usize> = BTreeMap::new();
    for (user, journey, attempt, end) in journeys(history) {
        let n = nth.entry(user).or_default();
        if attempt == 1 && last.contains_key(&(user, *n)) {
            *n += 1;
        }
        last.insert((user, *n), (journey, end));
    }
    let stranded = last.iter().find_map(|((user, _), (journey, end))| {
        matches!(end, JourneyEnd::Stuck { .. } | JourneyEnd::Waited(_) | JourneyEnd::Unfinished)
            .then(|| format!("user {user}, {}: never finished ({end:?})", journey.name()))
    });
    // A delivery is claimed in the store before it is sent (never twice): an instance lost in
    // between, or one whose send timed out while it was paused, loses that one message, by
    // design. Without either, every user gets it.
    let stranded = stranded.or_else(|| {
        let (_, received) = broadcast_received(history, records)?;
        let (user, _) = received.iter().find(|(_, n)| **n == 0)?;
        breaks(history, &losses(history))
            .is_empty()
            .then(|| format!("user {user} never received the broadcast an admin queued"))
    });
    let stranded = stranded.or_else(|| first(&records.cut_short));
    match (stranded, first(&records.open_work)) {
        (Some(user), Some(store)) => Some(format!("{user}; in the store: {store}")),
        (user, store) => user.or(store),
    }
}

/// A user gets at most 10 promo codes a minute checked, across every instance: the store's
/// record of each check, in simulated time (an instance's skewed clock does not move it).
/// Guesses are counted, at their first check: one code checked again (its update handled
/// again after a lost commit, one attempt counted once by the limiter; the code checked again
/// when the purchase it gave a discount to is paid) is not another guess. The limiter decides
/// when it counts, the store sees the check a little later: more than 10 checks within a minute
/// less that lag were more than 10 counted within a minute.
fn rate_limits_hold(records: &BotRecords) -> Option<String> {
    let mut checks: BTreeMap<i64, Vec<Duration>> = BTreeMap::new();
    let mut guessed = std::collections::BTreeSet::new();
    for (user, code, at) in &records.promo_checks {
        if guessed.insert((*user, code.as_str())) {
            checks.entry(*user).or_default().push(*at);
        }
    }
    for (user, times) in &checks {
        for (i, start) in times.iter().enumerate() {
            let within = times[i..].iter().take_while(|t| **t < *start + PROMO_WINDOW).count();
            if within > PROMO_CHECKS_PER_MINUTE {
                return Some(format!(
                    "user {user}: {within} promo codes checked within {} s from {:.3}s (the limit is {PROMO_CHECKS_PER_MINUTE} a minute)",
                    PROMO_WINDOW.as_secs(),
                    start.as_secs_f64()
                ));
            }
        }
    }
    None
}

/// No worker's message (key ready, reminder, trial notice, renewal) reaches a user twice.
fn single_leader_effects(records: &BotRecords) -> Option<String> {
    let mut seen: BTreeMap<(i64, &str), Duration> = BTreeMap::new();
    for call in records.calls.iter().filter(|c| is(c, "sendMessage")) {
        let text = call.body["text"].as_str().unwrap_or_default();
        if !WORKER_MESSAGES.iter().any(|n| text.contains(n)) {
            continue;
        }
        let chat = call.body["chat_id"].as_i64().unwrap_or(0);
        if let Some(before) = seen.insert((chat, text), call.at) {
            return Some(format!(
                "user {chat} got {text:?} twice, at {:.3}s and {:.3}s",
                before.as_secs_f64(),
                call.at.as_secs_f64()
            ));
        }
    }
    None
}

/// A reissue whose lock ran out under it never installs its key, as users see it: the key a
/// subscription holds at the end is never older than a key the bot sent its user or an admin
/// (reissued keys are labelled `reissue-<subscription>-<fencing token>`; a newer token is a later
/// lock). A stale holder's install arriving after a newer reissue's would leave the store on the
/// older key, which nobody was told of, while the key the user was sent is revoked by the
/// reconciler. (A newer key nobody was told of is a reissue whose reply was lost: not this.) A
/// key of another kind (a subscription bought again after its keys were retired gets a new
/// activation key) is older when the store wrote it before the key the bot sent.
fn keys_never_go_back(records: &BotRecords) -> Option<String> {
    let token = |id: &str| match KeyLabel::parse(id)? {
        KeyLabel::Reissue { subscription, token } => Some((subscription.to_string(), token)),
        KeyLabel::Activation { .. } => None,
    };
    let mut newest_told: BTreeMap<String, (u64, Duration)> = BTreeMap::new();
    for call in records.calls.iter().filter(|c| is(c, "sendMessage")) {
        let text = call.body["text"].as_str().unwrap_or_default();
        for (subscription, t) in text.split("ss://").skip(1).filter_map(|uri| {
            let id = uri.split_once('#')?.1;
            let id: String = id.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            token(&id)
        }) {
            let told = newest_told.entry(subscription).or_insert((t, call.at));
            if t > told.0 {
                *told = (t, call.at);
            }
        }
    }
    if let Some((subscription, keys)) = records.active_keys.iter().find(|(_, keys)| keys.len() > 1) {
        return Some(format!("subscription {subscription} has {} active keys in the store: {keys:?}", keys.len()));
    }
    for (subscription, (told, at)) in &newest_told {
        let Some(active) = records.active_keys.get(subscription).and_then(|keys| keys.first()) else { continue };
        let older = match token(active) {
            Some((_, held)) => held < *told,
            None => {
                let row = |id: &str| records.key_rows.get(id).copied();
                row(active) < row(&format!("reissue-{subscription}-{told}"))
            }
        };
        if older {
            return Some(format!(
                "subscription {subscription} ended on key {active}, older than key reissue-{subscription}-{told} \
                 the bot sent at {:.3}s: a reissue whose lock had run out installed its key after a newer one",
                at.as_secs_f64()
            ));
        }
    }
    None
}

/// The fake hosts saw each effect once: one key created per reissue that finished (two admins
/// pressing at once make one), one "payment received" per payment made, one broadcast message
/// per recipient.
fn no_double_effect(history: &History, records: &BotRecords) -> Option<String> {
    let mut payments: BTreeMap<i64, usize> = BTreeMap::new();
    for record in &history.records {
        if let Event::Paid { user, .. } = &record.event {
            *payments.entry(*user).or_default() += 1;
        }
    }
    // Keys are labelled reissue-<subscription>-<token>. Each key made must be a reissue that
    // finished and was told ("A new key was issued to user N" to an admin, "Here is your new
    // key" to the user): a key made by a reissue that lost a race is a double effect.
    // Keys made for one subscription with an instance lost in between: the lost one's key was
    // made and never installed (the reconciler revokes it); at least once, by design.
    let losses = losses(history);
    let breaks = breaks(history, &losses);
    let mut made: BTreeMap<i64, usize> = BTreeMap::new();
    let mut last_made: BTreeMap<&str, (Duration, Option<usize>)> = BTreeMap::new();
    for key in &records.created_keys {
        let (at, by) = (key.at, key.by);
        if let Some(rest) = key.id.strip_prefix("reissue-")
            && let Some((subscription, _)) = rest.split_once('-')
        {
            // A key made just before its instance was lost (its reissue never told) is revoked by
            // the reconciler: at least once, like a key made across a loss of either maker.
            let dying = losses.iter().any(|lost| lost.excuses(at, at + HANDLER_BOUND, &[by]));
            let excused = dying
                || last_made.get(subscription).is_some_and(|(before, before_by)| {
                    breaks.iter().any(|lost| lost.excuses(*before, at, &[*before_by, by]))
                });
            last_made.insert(subscription, (at, by));
            if excused {
                continue;
            }
            let owner = records.owners.get(subscription).copied().unwrap_or(0);
            *made.entry(owner).or_default() += 1;
        }
    }
    let mut told: BTreeMap<i64, usize> = BTreeMap::new();
    for call in records.calls.iter().filter(|c| is(c, "sendMessage")) {
        let text = call.body["text"].as_str().unwrap_or_default();
        let user = if let Some(rest) = text.split("A new key was issued to user ").nth(1) {
            rest.trim_end_matches('.').parse().ok()
        } else if text.contains("Here is your new key") {
            call.body["chat_id"].as_i64()
        } else {
            None
        };
        if let Some(user) = user {
            *told.entry(user).or_default() += 1;
        }
    }
    // Each reissue journey is two requests (one per admin): at most two keys, one per request.
    let mut requests: BTreeMap<i64, usize> = BTreeMap::new();
    for record in &history.records {
        if let Event::Journey { user, journey: Journey::Reissue, .. } = &record.event {
            *requests.entry(*user).or_default() += 2;
        }
    }
    // One request per withdrawal a user went through (a journey's try asks once; its confirm,
    // pressed or delivered again, is keyed by the step). The end-of-run review pays out whatever
    // is pending, so a second request from one try must be caught here.
    let mut tries: BTreeMap<i64, usize> = BTreeMap::new();
    for (user, journey, _, _) in journeys(history) {
        if journey == Journey::Withdraw {
            *tries.entry(user).or_default() += 1;
        }
    }
    let mut requested: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (id, user) in &records.withdrawals {
        requested.entry(*user).or_default().push(*id);
    }
    if let Some((user, ids)) = requested.iter().find(|(user, ids)| ids.len() > tries.get(user).copied().unwrap_or(0)) {
        let asked = tries.get(user).copied().unwrap_or(0);
        return Some(format!("user {user} has withdrawal requests {ids:?} from {asked} withdrawals gone through"));
    }
    if let Some(unknown) = records.created_keys.iter().map(|made| &made.id).find(|key| {
        key.strip_prefix("reissue-")
            .and_then(|rest| rest.split_once('-'))
            .is_some_and(|(subscription, _)| !records.owners.contains_key(subscription))
    }) {
        return Some(format!("the panel made key {unknown} for a subscription the store does not know"));
    }
    for (user, n) in &made {
        let finished = told.get(user).copied().unwrap_or(0).min(requests.get(user).copied().unwrap_or(0));
        if *n > finished {
            return Some(format!(
                "the panel made {n} reissued keys for user {user}, of which {finished} were reissues that \
                 finished and were told: two reissues ran at once, or one was never reported"
            ));
        }
    }
    // A Stars payment's update handed back to Telegram (or its instance lost) after the bot said
    // so is handled again and said again: replies are at least once. So is Telegram's duplicate
    // of it while Redis was away (degraded mode has no dedupe, by design). Such a repeat is not
    // a payment. (A crypto payment is no Telegram update: only a lost instance excuses a repeat.)
    let redis_away = redis_disturbed(history);
    // A user's "I paid, check" is answered with the state of their payment, "received" when it
    // was: that answer (the first such message after the bot took up the press) is not a second
    // payment either.
    let checks: BTreeMap<&str, i64> = history
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Pressed { user, query, label } if label == CHECK_BUTTON => Some((query.as_str(), *user)),
            _ => None,
        })
        .collect();
    let mut check_answers: BTreeMap<i64, Vec<Duration>> = BTreeMap::new();
    for call in records.calls.iter().filter(|c| is(c, "answerCallbackQuery")) {
        if let Some(user) = call.body["callback_query_id"].as_str().and_then(|q| checks.get(q)) {
            check_answers.entry(*user).or_default().push(call.at);
        }
    }
    let mut received: BTreeMap<i64, usize> = BTreeMap::new();
    let mut last_told: BTreeMap<i64, (Duration, Option<usize>)> = BTreeMap::new();
    for call in records.calls.iter().filter(|c| is(c, "sendMessage")) {
        let text = call.body["text"].as_str().unwrap_or_default();
        if text.contains("Payment received") || text.contains("went to your balance") {
            let user = call.body["chat_id"].as_i64().unwrap_or(0);
            let answers = check_answers.entry(user).or_default();
            if let Some(i) = answers.iter().position(|at| *at <= call.at) {
                answers.remove(i);
                continue;
            }
            let repeat = last_told.insert(user, (call.at, call.from)).is_some_and(|(before, by)| {
                let between = |at: &Duration| before <= *at && *at <= call.at;
                let again = |b: &HandedBack| b.user == user && b.payment.is_some() && between(&b.at);
                records.handed_back.iter().any(again)
                    || (redis_away && records.duplicates.iter().any(again))
                    || breaks.iter().any(|b| b.excuses(before, call.at, &[by, call.from]))
            });
            if !repeat {
                *received.entry(user).or_default() += 1;
            }
        }
    }
    let told_twice = received.iter().find_map(|(user, n)| {
        let paid = payments.get(user).copied().unwrap_or(0);
        (*n > paid).then(|| format!("user {user} was told of {n} payments received, having paid {paid} times"))
    });
    // One broadcast message per recipient (the worker claims each delivery in the store), per
    // broadcast queued (an admin who lost their place and composed it again queued two).
    told_twice.or_else(|| {
        let (text, received) = broadcast_received(history, records)?;
        let jobs = records.broadcasts.iter().filter(|t| **t == text).count();
        let (user, n) = received.iter().find(|(_, n)| **n > jobs)?;
        Some(format!("user {user} received the broadcast {text:?} {n} times ({jobs} queued)"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::outline::Made;
    use crate::history::Record;

    fn records(calls: Vec<Call>, created_keys: Vec<Made>) -> BotRecords {
        BotRecords {
            calls,
            created_keys,
            owners: BTreeMap::from([("7".to_owned(), 700)]),
            money: vec![],
            payments: vec![],
            paid_invoices: vec![],
            refunded: vec![],
            promo_checks: vec![],
            handed_back: vec![],
            duplicates: vec![],
            promo: vec![],
            open_work: vec![],
            cut_short: vec![],
            withdrawals: vec![],
            broadcasts: vec![],
            active_keys: BTreeMap::new(),
            key_rows: BTreeMap::new(),
        }
    }

    /// A call of `method` with `body`, made by instance `from` at `secs`.
    fn call(method: &str, body: serde_json::Value, secs: u64, from: usize) -> Call {
        Call { method: method.into(), body, at: Duration::from_secs(secs), from: Some(from) }
    }

    fn answer(secs: u64, from: usize) -> Call {
        call("answerCallbackQuery", serde_json::json!({"callback_query_id": "q1"}), secs, from)
    }

    fn key(secs: u64, by: usize) -> Made {
        Made { id: format!("reissue-7-{secs}"), at: Duration::from_secs(secs), by: Some(by) }
    }

    /// A run in which user 700 pressed a button at 1 s, with `fault` at 5 s.
    fn history(fault: FaultEvent) -> History {
        let mut history = History::default();
        let pressed = Event::Pressed { user: 700, query: "q1".into(), label: "Buy".into() };
        history.records.push(Record { at: Duration::from_secs(1), event: pressed });
        history.records.push(Record { at: Duration::from_secs(5), event: Event::Fault(fault) });
        history
    }

    /// A press answered by instances 1 and 2 across a crash of instance 0 was handled twice:
    /// the crash of another instance excuses nothing. Across a crash of either answering instance,
    /// or a pause of one, or Redis losing its data, it is at least once, by design.
    #[test]
    fn a_repeat_is_excused_only_by_a_break_of_an_instance_that_made_it() {
        let twice = records(vec![answer(2, 1), answer(8, 2)], vec![]);
        let judged = |fault| no_update_twice(&history(fault), &twice);
        assert!(judged(FaultEvent::Crashed(0)).is_some_and(|why| why.contains("handled twice")));
        assert!(judged(FaultEvent::Stopped(0)).is_some());
        assert!(judged(FaultEvent::Frozen { instance: 0, for_ms: 1_000 }).is_some());
        assert_eq!(judged(FaultEvent::Crashed(1)), None);
        assert_eq!(judged(FaultEvent::Stopped(2)), None);
        assert_eq!(judged(FaultEvent::Frozen { instance: 2, for_ms: 1_000 }), None);
        assert_eq!(judged(FaultEvent::RedisRestarted { lose_data: true }), None);
        assert!(judged(FaultEvent::RedisRestarted { lose_data: false }).is_some());
    }

    /// One reissue finished (an admin was told) and two keys were made for its subscription by
    /// instances 1 and 2: a double effect, unless one of their makers was lost or frozen in
    /// between.
    #[test]
    fn a_second_key_is_excused_only_by_a_break_of_its_makers() {
        let told =
            call("sendMessage", serde_json::json!({"chat_id": 1, "text": "A new key was issued to user 700."}), 9, 2);
        let keys = records(vec![told], vec![key(2, 1), key(8, 2)]);
        let judged = |fault| {
            let mut history = history(fault);
            let end = JourneyEnd::Done;
            let journey = Event::Journey { user: 700, journey: Journey::Reissue, attempt: 1, end };
            history.records.push(Record { at: Duration::from_secs(10), event: journey });
            no_double_effect(&history, &keys)
        };
        assert!(judged(FaultEvent::Crashed(0)).is_some_and(|why| why.contains("2 reissued keys")));
        assert!(judged(FaultEvent::Frozen { instance: 3, for_ms: 1_000 }).is_some());
        assert_eq!(judged(FaultEvent::Crashed(1)), None);
        assert_eq!(judged(FaultEvent::Frozen { instance: 1, for_ms: 1_000 }), None);
        assert_eq!(judged(FaultEvent::Frozen { instance: 2, for_ms: 1_000 }), None);
    }

    /// A user who paid once and was told "Payment received" by instances 1 and 2 was told of a
    /// payment twice, unless one of the two instances was lost or frozen in between.
    #[test]
    fn a_second_payment_message_is_excused_only_by_a_break_of_its_senders() {
        let received = |secs, from| {
            call("sendMessage", serde_json::json!({"chat_id": 700, "text": "Payment received: 30 days."}), secs, from)
        };
        let told = records(vec![received(2, 1), received(8, 2)], vec![]);
        let judged = |fault| {
            let mut history = history(fault);
            let paid = Event::Paid { user: 700, provider: "stars", id: "charge-1".into() };
            history.records.push(Record { at: Duration::from_secs(1), event: paid });
            no_double_effect(&history, &told)
        };
        assert!(judged(FaultEvent::Crashed(0)).is_some_and(|why| why.contains("told of 2 payments")));
        assert!(judged(FaultEvent::Frozen { instance: 3, for_ms: 1_000 }).is_some());
        assert_eq!(judged(FaultEvent::Crashed(1)), None);
        assert_eq!(judged(FaultEvent::Frozen { instance: 2, for_ms: 1_000 }), None);
    }

    /// A SIGTERM loses what its instance has not committed when the drain ends, up to
    /// `SHUTDOWN_TIMEOUT` later: a reply sent in the drain and sent again after the exit is at
    /// least once. One sent again after a drain that ended before the first is not.
    #[test]
    fn a_sigterm_excuses_a_repeat_across_its_drain() {
        let received = |secs, from| {
            call("sendMessage", serde_json::json!({"chat_id": 700, "text": "Payment received: 30 days."}), secs, from)
        };
        // User 700 paid once; instance 1 got SIGTERM at 5 s (its drain over by 10 s), frozen
        // from 5 s to 11 s when `frozen`.
        let judged = |told: Vec<Call>, frozen: bool| {
            let mut history = history(FaultEvent::Stopped(1));
            if frozen {
                let freeze = FaultEvent::Frozen { instance: 1, for_ms: 6_000 };
                history.records.push(Record { at: Duration::from_secs(5), event: Event::Fault(freeze) });
            }
            let paid = Event::Paid { user: 700, provider: "stars", id: "charge-1".into() };
            history.records.push(Record { at: Duration::from_secs(1), event: paid });
            no_double_effect(&history, &records(told, vec![]))
        };
        assert_eq!(judged(vec![received(9, 1), received(12, 1)], false), None);
        assert!(judged(vec![received(11, 1), received(13, 1)], false).is_some());
        // Frozen in its drain until 11 s, what it sent before exiting arrives after it woke (past
        // the freeze's own end): its own first, excused; another instance's first, not.
        let late = |from| {
            let mut first = received(11, from);
            first.at += Duration::from_millis(20);
            first
        };
        assert_eq!(judged(vec![late(1), received(13, 1)], true), None);
        assert!(judged(vec![late(0), received(13, 1)], true).is_some());
        // Another instance's answer in the drain, the stopped one's after it: not excused.
        assert!(judged(vec![received(8, 0), received(20, 1)], false).is_some());
    }

    #[test]
    fn a_store_left_on_a_key_older_than_one_the_user_was_sent_is_caught() {
        let sent = |key: &str, secs| {
            let text = format!(
                "Support replaced your VPN key. Your new key:\n<code>ss://abc@vpn.example:443/?outline=1#{key}</code>"
            );
            call("sendMessage", serde_json::json!({"chat_id": 700, "text": text}), secs, 0)
        };
        let judged = |told: Vec<Call>, active: &str| {
            let mut r = records(told, vec![]);
            r.active_keys = BTreeMap::from([("7".to_owned(), vec![active.to_owned()])]);
            keys_never_go_back(&r)
        };
        // The newer key was sent; the store ended on the older one: a late stale install.
        let why = judged(vec![sent("reissue-7-20", 5)], "reissue-7-10").expect("caught");
        assert!(why.contains("older than key reissue-7-20"), "{why}");
        // Sent in the other order (messages arrive late), the store on the newest: fine; so is a
        // newer key whose message was lost.
        assert_eq!(judged(vec![sent("reissue-7-20", 5), sent("reissue-7-10", 9)], "reissue-7-20"), None);
        assert_eq!(judged(vec![sent("reissue-7-10", 5)], "reissue-7-20"), None);
        // A subscription bought again after its keys were retired is on a newer activation key:
        // fine; on one written before the key the user was sent: caught.
        let rows =
            |activation| BTreeMap::from([("reissue-7-20".to_owned(), 5), ("activate-7-2".to_owned(), activation)]);
        let mut again = records(vec![sent("reissue-7-20", 5)], vec![]);
        again.active_keys = BTreeMap::from([("7".to_owned(), vec!["activate-7-2".to_owned()])]);
        again.key_rows = rows(9);
        assert_eq!(keys_never_go_back(&again), None);
        again.key_rows = rows(3);
        assert!(keys_never_go_back(&again).is_some());
        // Two active keys for one subscription is caught whatever was sent.
        let mut two = records(vec![], vec![]);
        two.active_keys = BTreeMap::from([("7".to_owned(), vec!["reissue-7-1".to_owned(), "reissue-7-2".to_owned()])]);
        assert!(keys_never_go_back(&two).is_some());
    }
}

//! Users as actors: each shopper reads what the bot sent to their chat and presses the buttons
//! it sent (by their labels), types what it asks for, pays at the fake providers, and waits for
//! the reply it expects — as a person would. Admins answer the requests shoppers make (approve a
//! withdrawal, reissue a key). Nothing here knows how the bot works inside: only its English
//! texts and button labels.
//!
//! A user who waits in vain (no reply, or a reply that shows the bot lost the conversation)
//! is stuck; they start that journey over once, from /start, as a person would.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use atlas::net::client::HttpClient;
use atlas::ports::{Ids, SeededIds};
use bytes::Bytes;
use hyper::Method;
use serde_json::Value;
use tokio::time::Instant;

use super::hosts::{ADMINS, BALANCER_HOST, BOT_PORT, CRYPTO_WEBHOOK_PATH, FIRST_SHOPPER, Fakes, url};
use crate::bot_api::updates;
use crate::history::{self, Event, JourneyEnd, SharedHistory};
use crate::instance::between;
use crate::net::SimNetwork;
use crate::scenario::{BotWorkload, Journey};

/// How long a user waits for a reply before they give up on the step: longer than Telegram
/// waits for an answer to a delivery, since a press delivered to an instance lost mid-update
/// comes again only after that (seed 6103 of the swarm gave up on a press 3 s before it came).
pub const PATIENCE: Duration = Duration::from_secs(super::ANSWER_TIMEOUT.as_secs() + 10);
/// How long a user who paid a crypto invoice waits to be told before pressing "I paid, check".
const CHECK_AFTER: Duration = Duration::from_secs(10);
/// How long a user waits for their key after paying: an activation claimed by an instance that
/// died is retried when its claim (60 s) runs out.
pub const KEY_PATIENCE: Duration = Duration::from_secs(100);

/// Clear answers that end a journey where it is (a limit reached, a code used up meanwhile).
const REFUSALS: [&str; 4] = ["Too many attempts", "has been used up", "already used this promo", "Not enough money"];

/// Answers that ask the user to try again later: they do, a few times, then give up (stuck).
const TRY_LATER: [&str; 4] = [
    "The service is busy right now",
    "Something went wrong on our side",
    "not available right now",
    "could not confirm your purchase",
];
const TRIES: u32 = 3;

/// Replies that show the bot no longer knows where the user was: waiting on is pointless.
const LOST: [&str; 3] = ["no longer active", "did not understand", "unfinished step was reset"];
/// How long a user reads on after such a reply, for the answer to their own update (the bot
/// sends at most one message a second to a chat, so a few may be queued before it).
const LOST_GRACE: Duration = Duration::from_secs(5);

/// What the users of a run share.
pub struct Crowd {
    pub fakes: Fakes,
    pub history: SharedHistory,
    pub workload: BotWorkload,
    /// The run's promo code (created before the run).
    pub promo: String,
    /// One admin task at a time: admins are people.
    desk: tokio::sync::Mutex<()>,
    queries: Cell<u64>,
    charges: Cell<u64>,
}

impl Crowd {
    pub fn new(fakes: Fakes, history: SharedHistory, workload: BotWorkload, promo: String) -> Crowd {
        Crowd {
            fakes,
            history,
            workload,
            promo,
            desk: Default::default(),
            queries: Cell::new(0),
            charges: Cell::new(0),
        }
    }

    fn note(&self, event: Event) {
        history::lock(&self.history).push(event);
    }
}

/// How the run's broadcast begins (the checkers find it by this).
pub const BROADCAST_PREFIX: &str = "Atlas news ";

/// The text of the run's broadcast (`BotWorkload::broadcast_at_secs`).
pub fn broadcast_text(seed: u64) -> String {
    format!("{BROADCAST_PREFIX}{seed}: new servers in three countries.")
}

/// The journeys of shopper `user` in this run, drawn by the seed.
pub fn plan(workload: &BotWorkload, seed: u64, user: i64) -> Vec<Journey> {
    let ids = SeededIds::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ user as u64);
    (0..workload.journeys_per_user)
        .map(|_| workload.journeys[(ids.next_u64() % workload.journeys.len() as u64) as usize])
        .collect()
}

/// The users host: every shopper at once; returns when all are done.
pub async fn users(crowd: Rc<Crowd>, seed: u64) {
    // The admins have started the bot (it can only write to people who have).
    for admin in ADMINS {
        let mut actor = actor(&crowd, admin);
        if let Err(end) = actor.step(Act::Text("/start"), &["Welcome"]).await {
            crowd.note(Event::Journey { user: admin, journey: Journey::Browse, attempt: 1, end });
        }
    }
    let mut shoppers = Vec::new();
    if let Some(at) = crowd.workload.broadcast_at_secs {
        let crowd = crowd.clone();
        shoppers.push(tokio::task::spawn_local(async move {
            tokio::time::sleep(Duration::from_secs_f64(at)).await;
            tries(&crowd, ADMINS[0], Journey::Broadcast, seed).await;
        }));
    }
    for i in 0..i64::from(crowd.workload.users) {
        let user = FIRST_SHOPPER + i;
        let crowd = crowd.clone();
        shoppers.push(tokio::task::spawn_local(async move {
            let ids = SeededIds::new(seed ^ (user as u64) << 20);
            let think = crowd.workload.think_ms;
            tokio::time::sleep(between(&ids, think)).await;
            for journey in plan(&crowd.workload, seed, user) {
                tries(&crowd, user, journey, seed).await;
                tokio::time::sleep(between(&ids, think)).await;
            }
        }));
    }
    for shopper in shoppers {
        let _ = shopper.await;
    }
    // The end of the shift: an admin approves what the pending list still shows.
    let mut admin = actor(&crowd, ADMINS[0]);
    if let Err(end) = admin.review().await {
        crowd.note(Event::Journey { user: admin.chat, journey: Journey::Review, attempt: 1, end });
    }
}

/// `user` goes through `journey`, starting over when stuck, as [`tries_again`] says; each try
/// is noted with how it ended.
async fn tries(crowd: &Crowd, user: i64, journey: Journey, seed: u64) {
    let mut tries = Tries::default();
    for attempt in 1..=3 {
        let mut actor = actor(crowd, user);
        let end = match actor.play(journey, seed).await {
            Ok(()) => JourneyEnd::Done,
            Err(end) => end,
        };
        let again = tries.again(attempt, &end);
        crowd.note(Event::Journey { user, journey, attempt, end });
        if !again {
            break;
        }
    }
}

/// Whether a user starts a journey over after a try that ended so: once after any try they got
/// stuck in, and a third time only when the bot said both times that it lost their place (two
/// Redis data losses can each cost a try; a second silent loss is the bot's to answer for).
#[derive(Default)]
pub struct Tries {
    first_lost: bool,
}

impl Tries {
    pub fn again(&mut self, attempt: u32, end: &JourneyEnd) -> bool {
        // The try ended on a reply showing the bot no longer knew where the user was.
        let lost = matches!(end, JourneyEnd::Stuck { waiting_for, .. } if LOST.iter().any(|l| waiting_for.contains(l)));
        if attempt == 1 {
            self.first_lost = lost;
        }
        match end {
            JourneyEnd::Stuck { .. } => attempt == 1 || (attempt == 2 && self.first_lost && lost),
            _ => false,
        }
    }
}

#[derive(Clone, Copy)]
enum Act<'s> {
    Text(&'s str),
    Press(&'s str),
}

/// One person at one chat, partway through a journey.
struct Actor<'c> {
    crowd: &'c Crowd,
    chat: i64,
    /// Steps taken so far in this journey.
    step: u32,
    /// Buttons are looked for in the messages from here on (the latest reply).
    reply_from: usize,
}

/// A new actor for `chat`, at the start of a journey.
fn actor(crowd: &Crowd, chat: i64) -> Actor<'_> {
    Actor { crowd, chat, step: 0, reply_from: 0 }
}

type Step<T> = Result<T, JourneyEnd>;

impl Actor<'_> {
    fn api(&self) -> &crate::bot_api::FakeBotApi {
        &self.crowd.fakes.telegram
    }

    fn stuck(&self, waiting_for: String) -> JourneyEnd {
        JourneyEnd::Stuck { step: self.step, waiting_for }
    }

    /// An admin's failure while serving this user's journey, as this journey's, at its step.
    fn theirs(&self, admin: i64, end: JourneyEnd) -> JourneyEnd {
        match end {
            JourneyEnd::Stuck { waiting_for, .. } => self.stuck(format!("admin {admin}: {waiting_for}")),
            other => other,
        }
    }

    /// Does `act`, then waits for a reply containing one of `expect`: which one, and its text.
    async fn step(&mut self, act: Act<'_>, expect: &[&str]) -> Step<(usize, String)> {
        for _ in 0..TRIES {
            if let Act::Press(label) = act {
                // The reply may come as more than one message: the button may be in a later one;
                // or the bot may have said instead why it cannot go on (the update behind the
                // question handled again, say, and the code used up meanwhile).
                let found = |me: &Self| me.button(label).is_some() || me.refusal().is_some();
                self.until(found, &format!("a button {label:?}")).await?;
                if self.button(label).is_none()
                    && let Some(refusal) = self.refusal()
                {
                    return Err(JourneyEnd::Refused(refusal));
                }
            }
            let mut since = self.api().message_count(self.chat);
            if let Some(query) = self.act(act)? {
                // What came before the bot took up this press answers earlier updates (one
                // redelivered after a crash, say), not this one.
                let answered = |me: &Self| me.api().messages_before_answer(me.chat, &query).is_some();
                self.until(answered, &format!("the press {query} taken up")).await?;
                since = self.api().messages_before_answer(self.chat, &query).unwrap_or(since).max(since);
            }
            match self.wait(since, expect).await {
                Err(JourneyEnd::Refused(why)) if TRY_LATER.contains(&why.as_str()) => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                found => {
                    let found = found?;
                    self.reply_from = since;
                    self.step += 1;
                    return Ok(found);
                }
            }
        }
        Err(self.stuck(format!("{expect:?}, told to try later {TRIES} times")))
    }

    /// Sends what `act` says; a press's callback query id.
    fn act(&mut self, act: Act<'_>) -> Step<Option<String>> {
        match act {
            Act::Text(text) => {
                self.api().push(updates::text(self.chat, "en", text));
                self.crowd.note(Event::Said { user: self.chat, what: text.to_owned() });
                Ok(None)
            }
            Act::Press(label) => {
                let data = self.button(label).ok_or_else(|| self.stuck(format!("a button {label:?}")))?;
                Ok(Some(self.press(&data, label)))
            }
        }
    }

    /// A clear refusal in the latest reply, if the bot gave one.
    fn refusal(&self) -> Option<String> {
        self.api().look_after(self.chat, self.reply_from, |messages| {
            messages.iter().find_map(|m| {
                let text = m["text"].as_str().unwrap_or_default();
                REFUSALS.iter().find(|r| text.contains(*r)).map(|r| (*r).to_owned())
            })
        })
    }

    /// The callback data of the button labelled `label` in the latest reply that has one.
    fn button(&self, label: &str) -> Option<String> {
        self.api()
            .look_after(self.chat, self.reply_from, |messages| messages.iter().rev().find_map(|m| button_in(m, label)))
    }

    fn press(&self, data: &str, label: &str) -> String {
        let n = self.crowd.queries.get() + 1;
        self.crowd.queries.set(n);
        let query = format!("q{n}");
        self.api().push(updates::callback(self.chat, "en", &query, data));
        self.crowd.note(Event::Pressed { user: self.chat, query: query.clone(), label: label.to_owned() });
        query
    }

    /// Waits for a message to this chat, after its first `since`, containing one of `expect`.
    /// A reply saying the bot lost the user's place may answer an earlier update that came again
    /// (handed back, or redelivered by Telegram) rather than this one: the user reads on, and is
    /// stuck with it only when the answer they wait for never comes.
    async fn wait(&self, since: usize, expect: &[&str]) -> Step<(usize, String)> {
        self.wait_within(PATIENCE, since, expect).await
    }

    async fn wait_within(&self, patience: Duration, since: usize, expect: &[&str]) -> Step<(usize, String)> {
        let mut deadline = Instant::now() + patience;
        let mut lost: Option<String> = None;
        loop {
            let told = self.api().told(self.chat);
            let seen_lost = lost.is_some();
            let found = self.api().look_after(self.chat, since, |messages| {
                for message in messages {
                    let text = message["text"].as_str().unwrap_or_default();
                    if let Some(i) = expect.iter().position(|needle| text.contains(needle)) {
                        return Some(Ok((i, text.to_owned())));
                    }
                    if let Some(refusal) = REFUSALS.iter().chain(&TRY_LATER).find(|r| text.contains(*r)) {
                        return Some(Err(JourneyEnd::Refused((*refusal).to_owned())));
                    }
                    if lost.is_none() && LOST.iter().any(|l| text.contains(l)) {
                        lost = Some(text.to_owned());
                    }
                }
                None
            });
            if let Some(found) = found {
                return found;
            }
            if !seen_lost && lost.is_some() {
                deadline = deadline.min(Instant::now() + LOST_GRACE);
            }
            tokio::select! {
                () = told => {}
                () = tokio::time::sleep_until(deadline) => {
                    let told = lost.map_or_else(String::new, |text| format!(", told {text:?}"));
                    return Err(self.stuck(format!("{expect:?}{told}")));
                }
            }
        }
    }

    /// Waits until this chat has received at least `count` messages containing `needle`.
    async fn until_told(&self, needle: &str, count: usize) -> Step<()> {
        self.until(|me| me.told_count(needle) >= count, &format!("{needle:?} x{count}")).await
    }

    fn told_count(&self, needle: &str) -> usize {
        self.api().count_containing(self.chat, needle)
    }

    /// Waits (at most `PATIENCE`) until `done` holds, looking again at each message delivered.
    async fn until(&self, done: impl Fn(&Self) -> bool, what: &str) -> Step<()> {
        self.until_within(PATIENCE, done, what).await
    }

    async fn until_within(&self, patience: Duration, done: impl Fn(&Self) -> bool, what: &str) -> Step<()> {
        let deadline = Instant::now() + patience;
        loop {
            let told = self.api().told(self.chat);
            if done(self) {
                return Ok(());
            }
            tokio::select! {
                () = told => {}
                () = tokio::time::sleep_until(deadline) => return Err(self.stuck(what.to_owned())),
            }
        }
    }

    /// One try of `journey`: an admin's broadcast from the admin panel, a shopper's from /start.
    async fn play(&mut self, journey: Journey, seed: u64) -> Step<()> {
        match journey {
            Journey::Broadcast => self.broadcast(&broadcast_text(seed)).await,
            shopper => self.go(shopper).await,
        }
    }

    async fn go(&mut self, journey: Journey) -> Step<()> {
        self.step(Act::Text("/start"), &["Welcome"]).await?;
        match journey {
            Journey::BuyBalance => self.buy("From balance").await,
            Journey::BuyCrypto => self.buy("Crypto").await,
            Journey::BuyStars => self.buy("Telegram Stars").await,
            Journey::Withdraw => self.withdraw().await,
            Journey::Promo => self.promo().await,
            Journey::Reissue => self.reissue().await,
            Journey::SpamPromo => self.spam_promo().await,
            Journey::Browse => self.browse().await,
            Journey::Review | Journey::Broadcast => {
                unreachable!("a shopper's journeys never include an admin's (checked at load)")
            }
        }
    }

    /// Buy → Basic → 30 days → `method`, pay, and wait for the key.
    async fn buy(&mut self, method: &str) -> Step<()> {
        self.step(Act::Press("Buy VPN"), &["Choose a plan"]).await?;
        self.step(Act::Press("Basic"), &["choose a period"]).await?;
        self.step(Act::Press("30 days"), &["How do you want to pay"]).await?;
        self.pay(method).await
    }

    /// At the payment step: pay with `method` until the bot says it is paid.
    async fn pay(&mut self, method: &str) -> Step<()> {
        match method {
            "Crypto" => {
                let (_, text) = self.step(Act::Press(method), &["in crypto here"]).await?;
                let invoice = invoice_id(&text).ok_or_else(|| self.stuck(format!("an invoice link in {text:?}")))?;
                self.crowd.fakes.crypto.pay(invoice);
                self.crowd.note(Event::Paid { user: self.chat, provider: "crypto", id: invoice.to_string() });
                let since = self.api().message_count(self.chat);
                // Every copy at once, with the one update id Crypto Pay gives a delivery.
                let copies = (0..self.crowd.workload.crypto_webhooks).map(|_| self.crypto_webhook(invoice, invoice));
                futures::future::join_all(copies).await;
                if self.wait_within(CHECK_AFTER, since, &["Payment received"]).await.is_err() {
                    // Not told (the message goes out once, after the payment is counted: an
                    // instance lost in between loses it): "I paid, check", as the invoice says.
                    self.step(Act::Press(super::checks::CHECK_BUTTON), &["Payment received", "already paid"]).await?;
                }
            }
            "Telegram Stars" => {
                let invoices = self.invoices().len();
                self.step(Act::Press(method), &["We sent you an invoice"]).await?;
                let invoice = self.invoices().get(invoices).cloned().ok_or_else(|| self.stuck("an invoice".into()))?;
                let payload = invoice["payload"].as_str().unwrap_or_default().to_owned();
                let stars = invoice["prices"][0]["amount"].as_u64().unwrap_or(0) as u32;
                // Telegram gives the bot 10 s to answer; unanswered, the payment fails and the
                // user presses "Pay" again (a new query), a few times.
                let mut approved = Err(self.stuck("a pre-checkout answer".into()));
                for _ in 0..3 {
                    let n = self.crowd.queries.get() + 1;
                    self.crowd.queries.set(n);
                    let query = format!("pc{n}");
                    self.api().push(updates::pre_checkout(self.chat, "en", &query, &payload, stars));
                    approved = self.approved(&query).await;
                    if !matches!(approved, Err(JourneyEnd::Stuck { .. })) {
                        break;
                    }
                }
                approved?;
                let charge = self.crowd.charges.get() + 1;
                self.crowd.charges.set(charge);
                let charge = format!("charge-{charge}");
                let paid = updates::paid(self.chat, "en", &payload, stars, &charge);
                let since = self.api().message_count(self.chat);
                self.api().push(paid);
                self.crowd.note(Event::Paid { user: self.chat, provider: "stars", id: charge });
                self.wait(since, &["Payment received"]).await?;
            }
            _ => {
                self.step(Act::Press(method), &["✅ Paid"]).await?;
            }
        }
        self.key().await
    }

    /// Waits for the key: told by the activation worker, or (as the bot tells people to do)
    /// found under "My subscription", looked at every 20 s.
    async fn key(&mut self) -> Step<()> {
        let deadline = Instant::now() + KEY_PATIENCE;
        let before = self.told_count("Your key is ready");
        // Told once already (an earlier purchase): a longer period keeps that key, so look.
        let mut look = before > 0;
        while Instant::now() < deadline {
            let ready = |me: &Self| me.told_count("Your key is ready") > before;
            if !look && self.until_within(Duration::from_secs(20), ready, "").await.is_ok() {
                return Ok(());
            }
            look = false;
            self.step(Act::Text("/start"), &["Welcome"]).await?;
            let (found, _) =
                self.step(Act::Press("My subscription"), &["Your key (tap to copy)", "being prepared"]).await?;
            if found == 0 {
                return Ok(());
            }
        }
        Err(JourneyEnd::Waited("the key".into()))
    }

    /// The Stars invoices sent to this chat.
    fn invoices(&self) -> Vec<Value> {
        self.api().calls_to("sendInvoice", self.chat)
    }

    /// Waits for the bot's yes to pre-checkout query `query`.
    async fn approved(&self, query: &str) -> Step<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let told = self.api().told(self.chat);
            let answer = self.api().find_call("answerPreCheckoutQuery", |a| {
                (a["pre_checkout_query_id"] == query).then(|| a["ok"] == true)
            });
            match answer {
                Some(true) => return Ok(()),
                Some(false) => return Err(JourneyEnd::Refused("pre-checkout refused".into())),
                None => {}
            }
            tokio::select! {
                () = told => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Err(self.stuck(format!("the answer to pre-checkout {query}")));
                }
            }
        }
    }

    /// Crypto Pay's `invoice_paid` webhook, signed, through the balancer.
    async fn crypto_webhook(&self, invoice: i64, update_id: i64) {
        let (body, signature) = self.crowd.fakes.crypto.webhook(update_id, invoice);
        let headers = [
            ("content-type", "application/json".to_owned()),
            (atlas::providers::cryptopay::SIGNATURE_HEADER, signature),
        ];
        let hook = url(&format!("http://{BALANCER_HOST}:{BOT_PORT}{CRYPTO_WEBHOOK_PATH}"));
        if let Ok(client) = HttpClient::new(SimNetwork, None) {
            // A failed delivery is Crypto Pay's to retry; the watcher finds the payment anyway.
            let _ = client.request(Method::POST, &hook, &headers, Bytes::from(body), Duration::from_secs(10)).await;
        }
    }

    /// Withdraw 100 to a card; the first admin approves it.
    async fn withdraw(&mut self) -> Step<()> {
        self.step(Act::Press("Withdraw"), &["How much"]).await?;
        self.step(Act::Text("100"), &["Withdraw <b>"]).await?;
        self.step(Act::Press("Confirm"), &["card or wallet"]).await?;
        let card = format!("4276 0000 0000 {:04}", self.chat % 10_000);
        self.step(Act::Text(&card), &["Please check"]).await?;
        let (_, created) = self.step(Act::Press("Confirm"), &["Withdrawal request #"]).await?;
        let id = number_after(&created, "Withdrawal request #").ok_or_else(|| self.stuck("a request number".into()))?;
        let since = self.api().message_count(self.chat);
        {
            let _desk = self.crowd.desk.lock().await;
            let admin = actor(self.crowd, ADMINS[0]);
            let notice = format!("Withdrawal #{id} from user {}", self.chat);
            admin.until_told(&notice, 1).await.map_err(|e| self.theirs(admin.chat, e))?;
            let data = admin
                .api()
                .messages_to(admin.chat)
                .iter()
                .rev()
                .find(|m| m["text"].as_str().is_some_and(|t| t.contains(&notice)))
                .and_then(|m| button_in(m, "Approve"))
                .ok_or_else(|| self.stuck(format!("an Approve button on {notice:?}")))?;
            // An admin told to try again later (Redis away) presses again, as a person would.
            for _ in 0..5 {
                let admin_since = admin.api().message_count(admin.chat);
                admin.press(&data, "Approve");
                match admin.wait(admin_since, &["approved", "already"]).await {
                    Err(JourneyEnd::Refused(why)) if TRY_LATER.contains(&why.as_str()) => {
                        tokio::time::sleep(Duration::from_secs(3)).await
                    }
                    done => {
                        done.map_err(|e| self.theirs(admin.chat, e))?;
                        break;
                    }
                }
            }
        }
        self.step += 1;
        self.wait(since, &["has been paid out"]).await.map(|_| ())
    }

    /// An admin sends `text` to everyone: admin panel, "Broadcast", the text, "Confirm"; told
    /// to try again later, they do (a few times).
    async fn broadcast(&mut self, text: &str) -> Step<()> {
        let _desk = self.crowd.desk.lock().await;
        self.step(Act::Text("/admin"), &["Admin tools"]).await?;
        self.step(Act::Press("Broadcast"), &["text of the broadcast"]).await?;
        self.step(Act::Text(text), &["broadcast will read"]).await?;
        self.step(Act::Press("Confirm"), &["queued"]).await.map(drop)
    }

    /// An admin opens the pending withdrawals in the admin panel and approves each, until none
    /// is left. A request's notice goes out once, after the request is stored: one lost with its
    /// instance leaves a request only this list shows (as an operator would find it).
    async fn review(&mut self) -> Step<()> {
        let _desk = self.crowd.desk.lock().await;
        for _ in 0..10 {
            self.step(Act::Text("/admin"), &["Admin tools"]).await?;
            let since = self.api().message_count(self.chat);
            let (found, _) = self.step(Act::Press("Withdrawals"), &["no pending withdrawals", "Withdrawal #"]).await?;
            if found == 0 {
                return Ok(());
            }
            // The list comes a message a second; what arrives later is seen on the next round.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let buttons: Vec<String> = self.api().look_after(self.chat, since, |messages| {
                messages
                    .iter()
                    .filter(|m| m["text"].as_str().is_some_and(|t| t.starts_with("Withdrawal #")))
                    .filter_map(|m| button_in(m, "Approve"))
                    .collect()
            });
            for data in buttons {
                let before = self.api().message_count(self.chat);
                self.press(&data, "Approve");
                match self.wait(before, &["approved", "already"]).await {
                    Ok(_) | Err(JourneyEnd::Refused(_)) => {}
                    Err(end) => return Err(end),
                }
            }
        }
        Err(self.stuck("a pending list that ends".into()))
    }

    /// Enter the run's promo code; if it gives a discount, buy with it from the balance.
    async fn promo(&mut self) -> Step<()> {
        self.step(Act::Press("Promo code"), &["Send your promo code"]).await?;
        let code = self.crowd.promo.clone();
        let (which, text) = self.step(Act::Text(&code), &["gives", "expired"]).await?;
        if which > 0 {
            return Err(JourneyEnd::Refused(text));
        }
        self.step(Act::Press("Basic"), &["choose a period"]).await?;
        self.step(Act::Press("30 days"), &["How do you want to pay"]).await?;
        self.pay("From balance").await
    }

    /// Both admins, each on whichever instance the balancer picks, ask for a new key for this
    /// shopper at the same moment (after the shopper has one).
    async fn reissue(&mut self) -> Step<()> {
        // A period of their own first (a seeded one may have ended), with its key.
        self.buy("From balance").await?;
        let _desk = self.crowd.desk.lock().await;
        let mut admins: Vec<Actor<'_>> = ADMINS.iter().map(|a| actor(self.crowd, *a)).collect();
        for admin in &mut admins {
            let chat = admin.chat;
            admin.step(Act::Text("/admin"), &["Admin tools"]).await.map_err(|e| self.theirs(chat, e))?;
            admin.step(Act::Press("Reissue a key"), &["Telegram id"]).await.map_err(|e| self.theirs(chat, e))?;
        }
        let target = self.chat.to_string();
        let sinces: Vec<usize> = admins.iter().map(|a| a.api().message_count(a.chat)).collect();
        let mine = self.api().message_count(self.chat);
        for admin in &mut admins {
            let chat = admin.chat;
            admin.act(Act::Text(&target)).map_err(|e| self.theirs(chat, e))?;
        }
        let answers = ["new key was issued", "already being made", "Another key change"];
        let mut issued = false;
        for (admin, since) in admins.iter().zip(sinces) {
            let (answer, _) = admin.wait(since, &answers).await.map_err(|e| self.theirs(admin.chat, e))?;
            issued |= answer == 0;
        }
        // A key the admins were told was made replaced the user's: the user is sent it.
        if issued {
            self.wait(mine, &["Support replaced your VPN key"]).await?;
        }
        Ok(())
    }

    /// A brute-forcer: 15 wrong promo codes, each sent as soon as the last was answered; told
    /// to wait, they wait a little and go on; when the bot lost their place, they open the
    /// promo prompt again.
    async fn spam_promo(&mut self) -> Step<()> {
        self.step(Act::Press("Promo code"), &["Send your promo code"]).await?;
        for n in 0..15 {
            let code = format!("WRONG{}X{n}", self.chat);
            match self.step(Act::Text(&code), &["no such promo code"]).await {
                Ok(_) => {}
                Err(JourneyEnd::Refused(_)) => tokio::time::sleep(Duration::from_secs(2)).await,
                Err(JourneyEnd::Stuck { .. }) => {
                    self.step(Act::Text("/start"), &["Welcome"]).await?;
                    self.step(Act::Press("Promo code"), &["Send your promo code"]).await?;
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    /// Three menu buttons pressed at once, then their three answers.
    async fn browse(&mut self) -> Step<()> {
        self.until(|me| me.button("Support").is_some(), "the menu").await?;
        let since = self.api().message_count(self.chat);
        for label in ["Balance", "Invite friends", "Support"] {
            self.act(Act::Press(label))?;
        }
        for needle in ["Your balance", "Invite friends", "Questions?"] {
            self.wait(since, &[needle]).await?;
        }
        Ok(())
    }
}

fn button_in(message: &Value, label: &str) -> Option<String> {
    let rows = message["reply_markup"]["inline_keyboard"].as_array()?;
    rows.iter()
        .flat_map(|row| row.as_array().cloned().unwrap_or_default())
        .find(|b| b["text"].as_str().is_some_and(|t| t.contains(label)))
        .and_then(|b| b["callback_data"].as_str().map(str::to_owned))
}

/// The digits right after `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> Option<i64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The Crypto Pay invoice id in the link the bot showed (`…?start=IV<id>`).
fn invoice_id(text: &str) -> Option<i64> {
    number_after(text, "start=IV")
}

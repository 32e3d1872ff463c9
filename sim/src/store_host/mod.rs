//! The sim store host: the Store model behind an RPC over turmoil TCP, so that a store call can
//! time out, and a call can commit while its reply is lost (the client then reports an unknown
//! outcome, as a real driver would after a dropped connection). [`SimStore`] is the Store port of
//! an instance; each operation is one method, in `model/`, that runs on the model through
//! [`SimStore::exec`].
//!
//! Each call sends its id over a connection to the host (one an earlier call of the instance left
//! idle, as a driver's pool would, or a new one); the call itself (a closure over the model)
//! waits in a mailbox both ends share, as the request's payload. The host runs it when the id
//! arrives and sends the id back. A request lost on the way is never applied; a reply lost on the
//! way leaves the call applied and the client in the dark (and its connection is dropped). A
//! request still on its way when the client gives up is applied when it arrives, as PostgreSQL
//! runs a statement that reaches it after its client stopped waiting: a late write is possible.

pub mod model;

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use atlas::store::postgres::STORE_CALL_TIMEOUT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::history::{Event, REPORT_TARGET, SharedHistory};
use crate::scenario::BrokenGuard;
use model::Model;

pub const STORE_HOST: &str = "postgres";
pub const STORE_PORT: u16 = 5432;

/// A call waiting for the host: the port operation's name, and the operation, which returns its
/// reply and, when a report is being made, the reply in words.
type Call = (&'static str, Box<dyn FnOnce(&mut Model) -> (Box<dyn Any + Send>, Option<String>) + Send>);

#[derive(Default)]
struct Mailbox {
    calls: BTreeMap<u64, Call>,
    replies: BTreeMap<u64, Box<dyn Any + Send>>,
    /// Calls whose client gave up after sending them: applied if they arrive, their reply dropped.
    abandoned: std::collections::BTreeSet<u64>,
    next: u64,
}

/// What the host and its clients share: the database and the mailbox.
#[derive(Clone, Default)]
pub struct StoreLink {
    pub model: Arc<Mutex<Model>>,
    mailbox: Arc<Mutex<Mailbox>>,
    tripwire: Arc<Mutex<Tripwire>>,
    /// A guard of the store switched off (`BrokenGuard::KeyFence`), for a mutation check.
    broken_guard: Arc<Mutex<Option<BrokenGuard>>>,
}

/// A fault waiting for a store call (`Fault::PauseAtStoreCall`): the call's name and the pause,
/// until an instance sends such a call; then that instance and the pause, until the run applies it.
#[derive(Default)]
struct Tripwire {
    armed: Option<(String, Duration)>,
    tripped: Option<(usize, Duration, String)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl StoreLink {
    /// Runs `f` on the model directly (to arrange a run's starting state, outside the network).
    pub fn with_model<T>(&self, f: impl FnOnce(&mut Model) -> T) -> T {
        f(&mut lock(&self.model))
    }

    /// Switches `guard` off, if it is one of the store's.
    pub fn break_guard(&self, guard: Option<BrokenGuard>) {
        *lock(&self.broken_guard) = guard.filter(|g| g.patch().is_none());
    }

    /// Sets the tripwire: the next instance to send `call` is to be frozen for `length`.
    pub fn arm(&self, call: String, length: Duration) {
        lock(&self.tripwire).armed = Some((call, length));
    }

    /// The instance that tripped the wire, its pause and the call (once).
    pub fn take_tripped(&self) -> Option<(usize, Duration, String)> {
        lock(&self.tripwire).tripped.take()
    }

    /// The call the tripwire still waits for (none was sent since it was set).
    pub fn still_armed(&self) -> Option<String> {
        lock(&self.tripwire).armed.as_ref().map(|(call, _)| call.clone())
    }

    fn trip(&self, op: &str, instance: usize) {
        let mut wire = lock(&self.tripwire);
        if wire.armed.as_ref().is_some_and(|(call, _)| call == op) {
            let (call, length) = wire.armed.take().expect("checked");
            wire.tripped = Some((instance, length, call));
        }
    }

    /// Calls the instances have made so far (each numbered by the mailbox).
    pub fn calls_made(&self) -> u64 {
        lock(&self.mailbox).next
    }
}

async fn connection(link: StoreLink, mut stream: turmoil::net::TcpStream) -> std::io::Result<()> {
    loop {
        let id = match stream.read_u64().await {
            Ok(id) => id,
            Err(_) => return Ok(()),
        };
        let call = lock(&link.mailbox).calls.remove(&id);
        if let Some((op, call)) = call {
            let (reply, words) = call(&mut lock(&link.model));
            if let Some(words) = words {
                tracing::debug!(target: REPORT_TARGET, "{op} -> {words}");
            }
            let mut mailbox = lock(&link.mailbox);
            if !mailbox.abandoned.remove(&id) {
                mailbox.replies.insert(id, reply);
            }
        }
        stream.write_u64(id).await?;
    }
}

/// The host's software.
pub async fn serve(link: StoreLink) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, STORE_PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::task::spawn_local(connection(link.clone(), stream));
    }
}

/// An instance's store: the Store port over the RPC (or, for the differential test, straight on
/// a model with no network in between).
#[derive(Clone)]
pub struct SimStore {
    link: StoreLink,
    instance: usize,
    history: Option<SharedHistory>,
    direct: bool,
    /// Connections to the host whose last call was answered, for the next calls.
    idle: Arc<Mutex<Vec<turmoil::net::TcpStream>>>,
}

impl SimStore {
    pub fn new(link: StoreLink, instance: usize, history: SharedHistory) -> SimStore {
        SimStore { link, instance, history: Some(history), direct: false, idle: Arc::default() }
    }

    /// The model alone, called in place: what the differential test compares with PostgreSQL.
    pub fn direct(model: Model) -> SimStore {
        let link = StoreLink { model: Arc::new(Mutex::new(model)), ..StoreLink::default() };
        SimStore::direct_on(link)
    }

    /// The model of `link`, called in place (no network): to arrange a run's starting state
    /// through the port itself.
    pub fn direct_on(link: StoreLink) -> SimStore {
        SimStore { link, instance: 0, history: None, direct: true, idle: Arc::default() }
    }

    /// Runs `f` on the model at the store host: the request may be lost (not applied), or the
    /// reply may be lost (applied, but the caller cannot know: an error of unknown outcome).
    async fn exec<T: Send + std::fmt::Debug + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Model) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        if self.direct {
            return Ok(self.link.with_model(f));
        }
        let id = {
            let mut mailbox = lock(&self.link.mailbox);
            mailbox.next += 1;
            let id = mailbox.next;
            let call = move |m: &mut Model| {
                let reply = f(m);
                let words =
                    tracing::enabled!(target: REPORT_TARGET, tracing::Level::DEBUG).then(|| format!("{reply:?}"));
                (Box::new(reply) as Box<dyn Any + Send>, words)
            };
            mailbox.calls.insert(id, (op, Box::new(call)));
            id
        };
        let sent = std::sync::atomic::AtomicBool::new(false);
        let exchange = async {
            let pooled = lock(&self.idle).pop();
            let mut stream = match pooled {
                Some(stream) => stream,
                None => turmoil::net::TcpStream::connect((STORE_HOST, STORE_PORT)).await?,
            };
            stream.write_u64(id).await?;
            sent.store(true, std::sync::atomic::Ordering::Relaxed);
            self.link.trip(op, self.instance);
            let back = stream.read_u64().await?;
            anyhow::ensure!(back == id, "reply {back} to call {id}");
            // Answered: the connection serves the next call. (One that failed or timed out is
            // dropped with this future: a late reply must not answer another call.)
            lock(&self.idle).push(stream);
            anyhow::Ok(())
        };
        let answered = tokio::time::timeout(STORE_CALL_TIMEOUT, exchange).await;
        let mut mailbox = lock(&self.link.mailbox);
        let reply = mailbox.replies.remove(&id);
        // A call that left never to be answered may still arrive: it stays, to be applied then.
        let gave_up =
            reply.is_none() && sent.load(std::sync::atomic::Ordering::Relaxed) && mailbox.calls.contains_key(&id);
        let pending = if gave_up {
            mailbox.abandoned.insert(id);
            None
        } else {
            mailbox.calls.remove(&id)
        };
        drop(mailbox);
        match (answered, reply) {
            (Ok(Ok(())), Some(reply)) => {
                Ok(*reply.downcast::<T>().map_err(|_| anyhow::anyhow!("reply of the wrong type"))?)
            }
            (result, _) => {
                let applied = if pending.is_some() { "not applied" } else { "outcome unknown" };
                let why = match result {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                Err(anyhow::anyhow!("store call failed ({applied}): {why}")).context("sim store")
            }
        }
    }

    fn broken_guard(&self) -> Option<BrokenGuard> {
        *lock(&self.link.broken_guard)
    }

    fn note(&self, event: Event) {
        if let Some(history) = &self.history {
            crate::history::lock(history).push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use atlas::domain::{Language, UserId};
    use atlas::ports::store::Accounts as _;

    use super::*;

    /// Sets user 7's language over a link held past the client's timeout (after one call that
    /// opened the connection), then releases the link; `hold_before_connecting` holds it before
    /// the first call instead. Returns the late call's error and whether it took effect. (One
    /// statement, as PostgreSQL would run it on arrival; a transaction of several the client
    /// abandoned would be rolled back there, and is applied whole here: stricter.)
    fn late_call(hold_before_connecting: bool) -> (String, bool) {
        let link = StoreLink::default();
        let now = crate::clock::wall_clock(Duration::ZERO);
        let direct = SimStore::direct_on(link.clone());
        crate::seed::now(direct.register_user(UserId::new(7).unwrap(), Language::En, None, None, now)).unwrap();
        let mut sim =
            crate::world::builder(1, Duration::from_secs(120), Duration::from_millis(10), Default::default()).build();
        let served = link.clone();
        sim.host(STORE_HOST, move || serve(served.clone()));
        let outcome: Rc<RefCell<Option<String>>> = Rc::default();
        let (client_link, told) = (link.clone(), outcome.clone());
        sim.client("client", async move {
            let store = SimStore::new(client_link, 0, SharedHistory::default());
            if !hold_before_connecting {
                store.user(UserId::new(7).unwrap()).await?;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let late = store.set_language(UserId::new(7).unwrap(), Language::Ru).await;
            *told.borrow_mut() = Some(format!("{:#}", late.expect_err("the held call is not answered")));
            Ok(())
        });
        sim.step().unwrap();
        if hold_before_connecting {
            sim.hold("client", STORE_HOST);
        }
        while sim.elapsed() < Duration::from_millis(500) {
            sim.step().unwrap();
        }
        sim.hold("client", STORE_HOST);
        while sim.elapsed() < STORE_CALL_TIMEOUT + Duration::from_secs(5) {
            sim.step().unwrap();
        }
        sim.release("client", STORE_HOST);
        while sim.elapsed() < STORE_CALL_TIMEOUT + Duration::from_secs(10) {
            sim.step().unwrap();
        }
        let user = crate::seed::now(direct.user(UserId::new(7).unwrap())).unwrap().expect("registered");
        (outcome.borrow().clone().expect("the client ran"), user.language == Language::Ru)
    }

    #[test]
    fn a_call_that_left_before_its_client_gave_up_is_applied_when_it_arrives() {
        let (error, applied) = late_call(false);
        assert!(error.contains("outcome unknown"), "{error}");
        assert!(applied, "the late call was not applied");
    }

    #[test]
    fn a_call_that_never_left_is_never_applied() {
        let (error, applied) = late_call(true);
        assert!(error.contains("not applied"), "{error}");
        assert!(!applied, "a call that never reached the store was applied");
    }
}

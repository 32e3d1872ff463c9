//! The transport floor of a whole-bot world (`atlas-sim bench`): the same hosts, and the same
//! round trips a run of the bot made between them ([`Traffic`]), with nothing at either end. A
//! webhook delivery still goes from the internet host to the balancer and on to an instance as
//! HTTP/1.1 (the project's client and server, over turmoil's TCP); the instance answering it makes
//! its share of the run's Redis commands and store calls (a frame out and one back over simulated
//! TCP, cheaper than RESP and the store's RPC) and of its Bot API, panel and Crypto Pay calls (HTTP
//! to fixed answers). No bot, no Lua, no model: what is left is what any bot that speaks to its
//! hosts over simulated HTTP and TCP pays, so the bot's time compression can be read against it.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atlas::net::client::HttpClient;
use bytes::Bytes;
use hyper::Method;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::hosts::{
    BALANCER_HOST, BOT_PORT, CRYPTO, CRYPTO_PORT, INTERNET_HOST, OUTLINE, OUTLINE_PORT, TELEGRAM, TELEGRAM_PORT,
    serving, url,
};
use crate::faults::{Traffic, instance_name};
use crate::net::SimNetwork;
use crate::redis_host::REDIS_PORT;
use crate::store_host::{STORE_HOST, STORE_PORT};
use crate::world::{self, REDIS_HOST};

/// An update as Telegram delivers it, a message as the bot sends it, and Telegram's answer: about
/// the sizes the whole-bot world's bodies have.
const UPDATE: &[u8] = &[b'u'; 420];
const SEND: &[u8] = &[b's'; 300];
const ANSWER: &[u8] = &[b'a'; 240];
/// A Redis script call out (its sha, keys and arguments in RESP) and its reply; a store call's
/// frame each way.
const REDIS_CALL: &[u8] = &[b'r'; 160];
const REDIS_REPLY: &[u8] = &[b'k'; 24];
const STORE_FRAME: &[u8] = &[b'd'; 8];
const PATIENCE: Duration = Duration::from_secs(20);

/// What the instance answering the `k`-th of `n` deliveries does for it: its share of each kind
/// of round trip, spread so that the shares add up to the run's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Share {
    redis: u64,
    store: u64,
    telegram: u64,
    panel: u64,
    crypto: u64,
}

fn share(traffic: &Traffic, k: u64) -> Share {
    let n = traffic.deliveries.max(1);
    let part = |total: u64| (k + 1) * total / n - k * total / n;
    Share {
        redis: part(traffic.redis),
        store: part(traffic.store),
        telegram: part(traffic.telegram),
        panel: part(traffic.panel),
        crypto: part(traffic.crypto),
    }
}

/// A floor run: simulated seconds per wall second, and the deliveries answered with 2xx (every
/// one, or the floor did less than the run it stands for).
#[derive(Clone, Copy, Debug)]
pub struct Floor {
    pub speed: f64,
    pub answered: u64,
}

/// The world a floor run replays a run in: its instances, its links, its step.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub instances: usize,
    pub network: world::Network,
    pub tick: Duration,
}

/// Runs `traffic` through the floor world of `shape`: the deliveries spread evenly over
/// `active`, the world stepped until `simulated` (the bot's run's length).
pub fn run(shape: Shape, traffic: Traffic, active: Duration, simulated: Duration) -> Floor {
    let started = std::time::Instant::now();
    let answered = Rc::new(Cell::new(0));
    let Shape { instances, network, tick } = shape;
    let mut sim = world::builder(0, simulated + Duration::from_secs(60), tick, network).build();
    sim.host(REDIS_HOST, || echo(REDIS_PORT, REDIS_REPLY));
    sim.host(STORE_HOST, || echo(STORE_PORT, STORE_FRAME));
    sim.host(BALANCER_HOST, move || balancer(instances));
    for index in 0..instances {
        sim.host(instance_name(index), move || instance(traffic));
    }
    let count = answered.clone();
    sim.host(INTERNET_HOST, move || internet(traffic, active, count.clone()));
    while sim.elapsed() < simulated {
        sim.step().expect("the floor world does not fail");
    }
    Floor { speed: sim.elapsed().as_secs_f64() / started.elapsed().as_secs_f64(), answered: answered.get() }
}

/// A host that answers each length-prefixed frame with `reply`.
async fn echo(port: u16, reply: &'static [u8]) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port)).await?;
    loop {
        let (mut stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut frame = Vec::new();
            while read_frame(&mut stream, &mut frame).await.is_ok() {
                if write_frame(&mut stream, reply).await.is_err() {
                    break;
                }
            }
        });
    }
}

async fn read_frame(stream: &mut turmoil::net::TcpStream, frame: &mut Vec<u8>) -> std::io::Result<()> {
    let len = stream.read_u32().await? as usize;
    frame.resize(len, 0);
    stream.read_exact(frame).await?;
    Ok(())
}

async fn write_frame(stream: &mut turmoil::net::TcpStream, frame: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(4 + frame.len());
    out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    out.extend_from_slice(frame);
    stream.write_all(&out).await
}

/// Connections to one TCP host, kept open between calls as a driver's pool keeps them.
struct Pool {
    host: &'static str,
    port: u16,
    idle: Mutex<Vec<turmoil::net::TcpStream>>,
}

impl Pool {
    fn new(host: &'static str, port: u16) -> Pool {
        Pool { host, port, idle: Mutex::default() }
    }

    async fn call(&self, frame: &[u8]) -> std::io::Result<()> {
        let pooled = self.idle.lock().expect("never poisoned").pop();
        let mut stream = match pooled {
            Some(stream) => stream,
            None => turmoil::net::TcpStream::connect((self.host, self.port)).await?,
        };
        write_frame(&mut stream, frame).await?;
        let mut reply = Vec::new();
        read_frame(&mut stream, &mut reply).await?;
        self.idle.lock().expect("never poisoned").push(stream);
        Ok(())
    }
}

struct Instance {
    traffic: Traffic,
    redis: Pool,
    store: Pool,
    http: HttpClient<SimNetwork>,
}

/// An instance: the webhook route, which makes the delivery's share of round trips and answers.
async fn instance(traffic: Traffic) -> turmoil::Result {
    use axum::extract::{Request, State};
    async fn hook(State(me): State<Arc<Instance>>, request: Request) -> hyper::StatusCode {
        let Some(k) = request.uri().query().and_then(|q| q.parse::<u64>().ok()) else {
            return hyper::StatusCode::BAD_REQUEST;
        };
        if axum::body::to_bytes(request.into_body(), 1 << 20).await.is_err() {
            return hyper::StatusCode::BAD_REQUEST;
        }
        let share = share(&me.traffic, k);
        for _ in 0..share.redis {
            me.redis.call(REDIS_CALL).await.expect("the floor's Redis answers");
        }
        for _ in 0..share.store {
            me.store.call(STORE_FRAME).await.expect("the floor's store answers");
        }
        let calls = [(share.telegram, TELEGRAM_PORT), (share.panel, OUTLINE_PORT), (share.crypto, CRYPTO_PORT)];
        for (count, port) in calls {
            let to = url(&format!("http://{INTERNET_HOST}:{port}/call"));
            for _ in 0..count {
                let sent = me.http.request(Method::POST, &to, &[], Bytes::from_static(SEND), PATIENCE).await;
                sent.expect("the floor's internet answers");
            }
        }
        hyper::StatusCode::OK
    }
    let me = Arc::new(Instance {
        traffic,
        redis: Pool::new(REDIS_HOST, REDIS_PORT),
        store: Pool::new(STORE_HOST, STORE_PORT),
        http: HttpClient::new(SimNetwork, None)?,
    });
    let router = axum::Router::new().fallback(hook).with_state(me);
    serving("instance", BOT_PORT, router).await
}

/// The balancer: each delivery on to the next instance, its answer back.
async fn balancer(instances: usize) -> turmoil::Result {
    use axum::extract::{Request, State};
    struct Lb {
        instances: usize,
        next: std::sync::atomic::AtomicUsize,
        http: HttpClient<SimNetwork>,
    }
    async fn forward(State(lb): State<Arc<Lb>>, request: Request) -> hyper::StatusCode {
        let query = request.uri().query().unwrap_or_default().to_owned();
        let Ok(body) = axum::body::to_bytes(request.into_body(), 1 << 20).await else {
            return hyper::StatusCode::BAD_REQUEST;
        };
        let host = instance_name(lb.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % lb.instances);
        let to = url(&format!("http://{host}:{BOT_PORT}/hook?{query}"));
        match lb.http.request(Method::POST, &to, &[], body, PATIENCE).await {
            Ok(answer) => answer.status,
            Err(_) => hyper::StatusCode::BAD_GATEWAY,
        }
    }
    let lb = Arc::new(Lb { instances, next: Default::default(), http: HttpClient::new(SimNetwork, None)? });
    let router = axum::Router::new().fallback(forward).with_state(lb);
    serving(BALANCER_HOST, BOT_PORT, router).await
}

/// The internet host: Telegram's, the panel's and Crypto Pay's fixed answers, and Telegram
/// delivering the run's updates, evenly over `active`, each on its own task.
async fn internet(traffic: Traffic, active: Duration, answered: Rc<Cell<u64>>) -> turmoil::Result {
    async fn answer() -> Bytes {
        Bytes::from_static(ANSWER)
    }
    let serve = |service, port| serving(service, port, axum::Router::new().fallback(answer));
    let http = Arc::new(HttpClient::new(SimNetwork, None)?);
    let n = traffic.deliveries;
    tokio::task::spawn_local(async move {
        let start = tokio::time::Instant::now();
        for k in 0..n {
            tokio::time::sleep_until(start + active.mul_f64(k as f64 / n.max(1) as f64)).await;
            let (http, answered) = (http.clone(), answered.clone());
            tokio::task::spawn_local(async move {
                let to = url(&format!("http://{BALANCER_HOST}:{BOT_PORT}/hook?{k}"));
                let answer = http.request(Method::POST, &to, &[], Bytes::from_static(UPDATE), PATIENCE).await;
                if answer.is_ok_and(|a| a.status.is_success()) {
                    answered.set(answered.get() + 1);
                }
            });
        }
    });
    tokio::try_join!(serve(TELEGRAM, TELEGRAM_PORT), serve(OUTLINE, OUTLINE_PORT), serve(CRYPTO, CRYPTO_PORT))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape { instances: 2, network: world::Network::default(), tick: Duration::from_millis(20) }
    }

    #[test]
    fn the_shares_add_up_to_the_runs_counts() {
        let traffic = Traffic { deliveries: 7, redis: 23, store: 5, telegram: 14, panel: 1, crypto: 0 };
        let mut sum = Share::default();
        for k in 0..traffic.deliveries {
            let s = share(&traffic, k);
            sum.redis += s.redis;
            sum.store += s.store;
            sum.telegram += s.telegram;
            sum.panel += s.panel;
            sum.crypto += s.crypto;
        }
        assert_eq!(sum, Share { redis: 23, store: 5, telegram: 14, panel: 1, crypto: 0 });
    }

    #[test]
    fn the_floor_world_answers_every_delivery() {
        let traffic = Traffic { deliveries: 20, redis: 40, store: 50, telegram: 40, panel: 3, crypto: 2 };
        let floor = run(shape(), traffic, Duration::from_secs(2), Duration::from_secs(5));
        assert_eq!(floor.answered, 20);
        assert!(floor.speed > 0.0);
    }

    #[test]
    fn a_floor_stopped_before_its_deliveries_are_due_answers_fewer() {
        // The count is of answers, not of deliveries planned: stopped at 1 s of 2, about half.
        let traffic = Traffic { deliveries: 20, ..Traffic::default() };
        let floor = run(shape(), traffic, Duration::from_secs(2), Duration::from_secs(1));
        assert!((5..15).contains(&floor.answered), "{floor:?}");
    }
}

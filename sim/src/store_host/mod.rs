//! The sim store host: the Store model behind an RPC over turmoil TCP, so that a store call can
//! time out, and a call can commit while its reply is lost (the client then reports an unknown
//! outcome, as a real driver would after a dropped connection).
//!
//! Each call opens a connection to the host and sends the call's id; the call itself (a closure
//! over the model) waits in a mailbox both ends share, as the request's payload. The host runs it
//! when the id arrives and sends the id back. A request lost on the way is never applied; a reply
//! lost on the way leaves the call applied and the client in the dark.

pub mod model;

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use atlas::domain::*;
use atlas::ports::Store;
use atlas::ports::store::*;
use atlas::ports::vpn::PanelKey;
use atlas::store::postgres::STORE_CALL_TIMEOUT;
use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::history::{Event, SharedHistory};
use model::Model;

pub const STORE_HOST: &str = "postgres";
pub const STORE_PORT: u16 = 5432;

type Call = Box<dyn FnOnce(&mut Model) -> Box<dyn Any + Send> + Send>;

#[derive(Default)]
struct Mailbox {
    calls: BTreeMap<u64, Call>,
    replies: BTreeMap<u64, Box<dyn Any + Send>>,
    next: u64,
}

/// What the host and its clients share: the database and the mailbox.
#[derive(Clone, Default)]
pub struct StoreLink {
    pub model: Arc<Mutex<Model>>,
    mailbox: Arc<Mutex<Mailbox>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl StoreLink {
    /// Runs `f` on the model directly (to arrange a run's starting state, outside the network).
    pub fn with_model<T>(&self, f: impl FnOnce(&mut Model) -> T) -> T {
        f(&mut lock(&self.model))
    }
}

async fn connection(link: StoreLink, mut stream: turmoil::net::TcpStream) -> std::io::Result<()> {
    loop {
        let id = match stream.read_u64().await {
            Ok(id) => id,
            Err(_) => return Ok(()),
        };
        let call = lock(&link.mailbox).calls.remove(&id);
        if let Some(call) = call {
            let reply = call(&mut lock(&link.model));
            lock(&link.mailbox).replies.insert(id, reply);
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
}

impl SimStore {
    pub fn new(link: StoreLink, instance: usize, history: SharedHistory) -> SimStore {
        SimStore { link, instance, history: Some(history), direct: false }
    }

    /// The model alone, called in place: what the differential test compares with PostgreSQL.
    pub fn direct(model: Model) -> SimStore {
        let link = StoreLink { model: Arc::new(Mutex::new(model)), mailbox: Arc::default() };
        SimStore { link, instance: 0, history: None, direct: true }
    }

    async fn call<T: Send + 'static>(&self, f: impl FnOnce(&mut Model) -> T + Send + 'static) -> anyhow::Result<T> {
        if self.direct {
            return Ok(self.link.with_model(f));
        }
        let id = {
            let mut mailbox = lock(&self.link.mailbox);
            mailbox.next += 1;
            let id = mailbox.next;
            mailbox.calls.insert(id, Box::new(move |m| Box::new(f(m)) as Box<dyn Any + Send>));
            id
        };
        let exchange = async {
            let mut stream = turmoil::net::TcpStream::connect((STORE_HOST, STORE_PORT)).await?;
            stream.write_u64(id).await?;
            let back = stream.read_u64().await?;
            anyhow::ensure!(back == id, "reply {back} to call {id}");
            anyhow::Ok(())
        };
        let answered = tokio::time::timeout(STORE_CALL_TIMEOUT, exchange).await;
        let mut mailbox = lock(&self.link.mailbox);
        let pending = mailbox.calls.remove(&id);
        let reply = mailbox.replies.remove(&id);
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

    fn note(&self, event: Event) {
        if let Some(history) = &self.history {
            crate::history::lock(history).push(event);
        }
    }
}

impl Store for SimStore {
    async fn register_user(
        &self,
        user: UserId,
        language: Language,
        referrer: Option<UserId>,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        Ok(self.call(move |m| m.register_user(user, language, referrer, now)).await?)
    }

    async fn user(&self, user: UserId) -> Result<Option<User>, StoreError> {
        Ok(self.call(move |m| m.user(user)).await?)
    }

    async fn catalogue(&self) -> Result<Vec<TariffPeriod>, StoreError> {
        Ok(self.call(|m| m.catalogue()).await?)
    }

    async fn subscription(&self, user: UserId) -> Result<Option<Subscription>, StoreError> {
        Ok(self.call(move |m| m.subscription(user)).await?)
    }

    async fn top_up(
        &self,
        user: UserId,
        payment: ProviderPayment,
        now: DateTime<Utc>,
    ) -> Result<TopUpOutcome, PaymentError> {
        self.call(move |m| m.top_up(user, &payment, now)).await?
    }

    async fn admin_adjust(
        &self,
        adjustment: AdminAdjustment,
        now: DateTime<Utc>,
    ) -> Result<AdjustOutcome, BalanceError> {
        self.call(move |m| m.admin_adjust(&adjustment, now)).await?
    }

    async fn create_promo(&self, promo: NewPromo, now: DateTime<Utc>) -> Result<(), PromoCreateError> {
        self.call(move |m| m.create_promo(&promo, now)).await?
    }

    async fn set_auto_renew(&self, user: UserId, enabled: bool, _now: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(self.call(move |m| m.set_auto_renew(user, enabled)).await?)
    }

    async fn validate_promo(
        &self,
        user: UserId,
        code: &PromoCode,
        now: DateTime<Utc>,
    ) -> Result<PromoQuote, PromoError> {
        let code = code.clone();
        self.call(move |m| m.validate_promo(user, &code, now)).await?
    }

    async fn purchase_from_balance(
        &self,
        request: PurchaseRequest,
        now: DateTime<Utc>,
    ) -> Result<PurchaseOutcome, PurchaseError> {
        self.call(move |m| m.purchase_from_balance(&request, now)).await?
    }

    async fn create_pending_purchase(
        &self,
        request: PurchaseRequest,
        provider: PaymentProviderKind,
        ttl_seconds: i32,
        now: DateTime<Utc>,
    ) -> Result<PendingPurchase, PurchaseError> {
        self.call(move |m| m.create_pending_purchase(&request, provider, ttl_seconds, now)).await?
    }

    async fn finalize_purchase(
        &self,
        purchase_id: i64,
        payment: ProviderPayment,
        now: DateTime<Utc>,
    ) -> Result<FinalizeOutcome, PaymentError> {
        self.call(move |m| m.finalize_purchase(purchase_id, &payment, now)).await?
    }

    async fn close_pending_purchase(&self, purchase_id: i64, closure: Closure) -> Result<(), CloseError> {
        self.call(move |m| m.close_pending_purchase(purchase_id, closure)).await?
    }

    async fn grant_referral_reward(
        &self,
        purchase_id: i64,
        percent: u8,
        now: DateTime<Utc>,
    ) -> Result<ReferralOutcome, ReferralError> {
        self.call(move |m| m.grant_referral_reward(purchase_id, percent, now)).await?
    }

    async fn create_withdrawal(
        &self,
        user: UserId,
        amount: Money,
        _requisites: Requisites,
        minimum: Money,
        _now: DateTime<Utc>,
    ) -> Result<WithdrawalCreated, WithdrawalError> {
        self.call(move |m| m.create_withdrawal(user, amount, minimum)).await?
    }

    async fn decide_withdrawal(
        &self,
        decision: WithdrawalDecision,
        _now: DateTime<Utc>,
    ) -> Result<WithdrawalDecided, WithdrawalError> {
        self.call(move |m| m.decide_withdrawal(&decision)).await?
    }

    async fn auto_renew_next(
        &self,
        now: DateTime<Utc>,
        horizon_seconds: i32,
    ) -> Result<Option<RenewalOutcome>, StoreError> {
        Ok(self.call(move |m| m.auto_renew_next(now, horizon_seconds)).await?)
    }

    async fn activate_trial(
        &self,
        user: UserId,
        tariff: &TariffCode,
        days: i32,
        now: DateTime<Utc>,
    ) -> Result<Subscription, TrialError> {
        let tariff = tariff.clone();
        self.call(move |m| m.activate_trial(user, &tariff, days, now)).await?
    }

    async fn pending_activations(&self, limit: i64) -> Result<Vec<i64>, StoreError> {
        Ok(self.call(move |m| m.pending_activations(limit)).await?)
    }

    async fn record_activation(
        &self,
        subscription_id: i64,
        result: ActivationResult,
        _now: DateTime<Utc>,
    ) -> Result<ActivationOutcome, StoreError> {
        Ok(self.call(move |m| m.record_activation(subscription_id, &result)).await?)
    }

    async fn claim_key_fence(
        &self,
        subscription_id: i64,
        fencing_token: u64,
        _now: DateTime<Utc>,
    ) -> Result<(), KeyError> {
        let (instance, subscription, token) = (self.instance, subscription_id, fencing_token);
        self.note(Event::KeyClaim { instance, subscription, token });
        let result = self.call(move |m| m.claim_key_fence(subscription_id, fencing_token)).await;
        let said = match &result {
            Ok(Ok(())) => "claimed",
            Ok(Err(KeyError::StaleFencingToken { .. })) => "fenced",
            _ => "failed",
        };
        self.note(Event::KeyClaimed { instance, subscription, token, result: said.into() });
        result?
    }

    async fn install_reissued_key(
        &self,
        subscription_id: i64,
        fencing_token: u64,
        key: PanelKey,
        _now: DateTime<Utc>,
    ) -> Result<KeyInstalled, KeyError> {
        let result = self.call(move |m| m.install_reissued_key(subscription_id, fencing_token, &key)).await;
        let installed = match &result {
            Ok(Ok(_)) => "installed",
            Ok(Err(KeyError::StaleFencingToken { .. })) => "fenced",
            _ => "failed",
        };
        self.note(Event::KeyInstall {
            instance: self.instance,
            subscription: subscription_id,
            token: fencing_token,
            result: installed.into(),
        });
        result?
    }

    async fn claim_notice(
        &self,
        subscription_id: i64,
        kind: NoticeKind,
        threshold: &str,
        _now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let threshold = threshold.to_owned();
        Ok(self.call(move |m| m.claim_notice(subscription_id, kind, &threshold)).await?)
    }
}

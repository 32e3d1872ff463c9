//! Subscriptions and keys in the model: trial, auto-renewal, activation, fenced reissues. The
//! reissue steps are also written to the run's history (what the store was asked and answered),
//! for the `no_double_reissue` checker.

use std::time::Duration;

use atlas::domain::*;
use atlas::ports::store::*;
use atlas::ports::vpn::PanelKey;
use chrono::{DateTime, Utc};

use super::{KeyRow, Model, UserRefusal, money};
use crate::history::{Event, StoreAnswer};
use crate::scenario::BrokenGuard;
use crate::store_host::SimStore;

fn token(fencing_token: u64) -> Result<i64, KeyError> {
    i64::try_from(fencing_token).map_err(|_| KeyError::Unexpected(anyhow::anyhow!("fencing token out of range")))
}

fn answer<T>(result: &anyhow::Result<Result<T, KeyError>>) -> StoreAnswer {
    match result {
        Ok(Ok(_)) => StoreAnswer::Done,
        Ok(Err(KeyError::StaleFencingToken { .. })) => StoreAnswer::Fenced,
        _ => StoreAnswer::Failed,
    }
}

impl Subscriptions for SimStore {
    async fn subscription(&self, user: UserId) -> Result<Option<Subscription>, StoreError> {
        Ok(self.exec("subscription", move |m: &mut Model| m.subscription_row(user)).await?)
    }

    async fn current_key(&self, subscription: SubscriptionId) -> Result<Option<PanelKey>, StoreError> {
        Ok(self
            .exec("current_key", move |m: &mut Model| {
                m.keys.iter().find(|k| k.subscription == subscription && k.active).map(|k| k.key.clone())
            })
            .await?)
    }

    async fn reissued_for(&self, subscription: SubscriptionId, request: &str) -> Result<Option<PanelKey>, StoreError> {
        let request = request.to_owned();
        Ok(self
            .exec("reissued_for", move |m: &mut Model| {
                let mine = |k: &&KeyRow| k.subscription == subscription;
                if !m.keys.iter().filter(mine).any(|k| k.request.as_deref() == Some(&*request)) {
                    return None;
                }
                m.keys.iter().filter(mine).find(|k| k.active).map(|k| k.key.clone())
            })
            .await?)
    }

    async fn set_auto_renew(&self, user: UserId, enabled: bool, _now: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(self
            .exec("set_auto_renew", move |m: &mut Model| {
                let Some(s) = m.sub_of_user.get(&user).and_then(|id| m.subscriptions.get_mut(id)) else {
                    return false;
                };
                s.auto_renew = enabled;
                true
            })
            .await?)
    }

    async fn auto_renew_next(
        &self,
        now: DateTime<Utc>,
        horizon: Duration,
    ) -> Result<Option<RenewalOutcome>, StoreError> {
        Ok(self
            .exec("auto_renew_next", move |m: &mut Model| {
                let due = now + chrono::Duration::seconds(horizon.as_secs() as i64);
                let s = m
                    .subscriptions
                    .values()
                    .filter(|s| {
                        s.auto_renew
                            && !s.is_trial
                            && s.expires_at <= due
                            && !m.renewals.contains(&(s.id, s.expires_at))
                    })
                    .min_by_key(|s| (s.expires_at, s.id))?;
                let (id, user, tariff_id, days, period_start) =
                    (s.id, s.user, s.tariff_id, s.period_days, s.expires_at);
                let active = m.tariffs.iter().any(|t| t.id == tariff_id && t.active);
                let price = m.periods.get(&(tariff_id, days)).copied().filter(|_| active);
                let balance = m.users[&user].balance;
                m.renewals.insert((id, period_start));
                let claim = m.next(Some);
                let Some(price) = price else {
                    return Some(RenewalOutcome::TariffUnavailable { subscription: id, user });
                };
                if balance < price {
                    return Some(RenewalOutcome::InsufficientFunds { subscription: id, user });
                }
                m.post(user, -price, "auto_renewal", format!("renewal:{claim}"));
                let s = m.subscriptions.get_mut(&id).expect("found");
                s.expires_at = s.expires_at.max(now) + chrono::Duration::days(i64::from(days));
                s.last_auto_renewal_at = Some(now);
                s.revive_activation();
                Some(RenewalOutcome::Renewed { subscription: id, user, amount: money(price), expires_at: s.expires_at })
            })
            .await?)
    }

    async fn activate_trial(
        &self,
        user: UserId,
        tariff: &TariffCode,
        days: u16,
        now: DateTime<Utc>,
    ) -> Result<Subscription, TrialError> {
        let tariff = tariff.clone();
        self.exec("activate_trial", move |m: &mut Model| {
            let row = match m.lock_user(user) {
                Ok(u) => u,
                Err(UserRefusal::Banned) => return Err(TrialError::UserBanned),
                Err(UserRefusal::Unknown) => return Err(TrialError::UnknownUser),
            };
            if row.trial_used {
                return Err(TrialError::AlreadyUsed);
            }
            if m.sub_of_user.contains_key(&user) {
                return Err(TrialError::NotForSubscribers);
            }
            let tariff_id = m.tariffs.iter().find(|t| t.code == tariff.as_str()).ok_or(TrialError::UnknownTariff)?.id;
            m.users.get_mut(&user).expect("checked").trial_used = true;
            m.new_subscription(user, tariff_id, i32::from(days), now, true);
            Ok(m.subscription_row(user).expect("just created"))
        })
        .await?
    }

    async fn claim_activations(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<PendingActivation>, StoreError> {
        Ok(self
            .exec("claim_activations", move |m: &mut Model| {
                let mut due: Vec<(Option<DateTime<Utc>>, SubscriptionId)> = m
                    .subscriptions
                    .values()
                    .filter(|s| {
                        s.activation_status == ActivationStatus::Pending
                            && s.expires_at > now
                            && s.activation_next_at.is_none_or(|at| at <= now)
                    })
                    .map(|s| (s.activation_next_at, s.id))
                    .collect();
                // NULLS FIRST, then the earliest.
                due.sort_by_key(|(at, id)| (at.is_some(), *at, *id));
                due.truncate(limit as usize);
                let claim = chrono::Duration::from_std(ACTIVATION_CLAIM).expect("a short claim");
                let mut taken: Vec<PendingActivation> = due
                    .into_iter()
                    .map(|(_, id)| {
                        let s = m.subscriptions.get_mut(&id).expect("found");
                        s.activation_next_at = Some(now + claim);
                        let user = s.user;
                        let generation = m.keys.iter().filter(|k| k.subscription == id).count() as u32;
                        PendingActivation {
                            subscription: id,
                            user,
                            label: KeyLabel::Activation { subscription: id, generation },
                        }
                    })
                    .collect();
                taken.sort_by_key(|p| p.subscription);
                taken
            })
            .await?)
    }

    async fn record_activation(
        &self,
        subscription: SubscriptionId,
        generation: u32,
        result: ActivationResult,
        now: DateTime<Utc>,
    ) -> Result<ActivationOutcome, StoreError> {
        Ok(self
            .exec("record_activation", move |m: &mut Model| {
                let keys = m.keys.iter().filter(|k| k.subscription == subscription).count() as u32;
                let pending = |s: &&mut super::SubRow| s.activation_status == ActivationStatus::Pending;
                let Some(s) = m.subscriptions.get_mut(&subscription).filter(pending).filter(|_| keys == generation)
                else {
                    return ActivationOutcome::NotPending;
                };
                match result {
                    ActivationResult::Succeeded(key) => {
                        s.activation_status = ActivationStatus::Active;
                        s.activation_next_at = None;
                        m.push_key(subscription, key);
                        ActivationOutcome::Activated
                    }
                    ActivationResult::Failed { .. } => {
                        s.activation_attempts += 1;
                        s.activation_next_at = Some(now + activation_backoff(s.activation_attempts));
                        if s.activation_attempts >= ACTIVATION_ATTEMPTS_MAX {
                            s.activation_status = ActivationStatus::Failed;
                            ActivationOutcome::GaveUp
                        } else {
                            ActivationOutcome::WillRetry { attempts: s.activation_attempts }
                        }
                    }
                }
            })
            .await?)
    }

    async fn claim_key_fence(
        &self,
        subscription: SubscriptionId,
        fencing_token: u64,
        _now: DateTime<Utc>,
    ) -> Result<(), KeyError> {
        let instance = self.instance;
        self.note(Event::KeyClaim { instance, subscription, token: fencing_token });
        let result = self
            .exec("claim_key_fence", move |m: &mut Model| {
                let token = token(fencing_token)?;
                let s = m.subscriptions.get_mut(&subscription).ok_or(KeyError::UnknownSubscription)?;
                if token <= s.key_fence {
                    return Err(KeyError::StaleFencingToken { current: s.key_fence as u64 });
                }
                s.key_fence = token;
                Ok(())
            })
            .await;
        self.note(Event::KeyClaimed { instance, subscription, token: fencing_token, answer: answer(&result) });
        result?
    }

    async fn install_reissued_key(
        &self,
        subscription: SubscriptionId,
        fencing_token: u64,
        key: PanelKey,
        request: Option<&str>,
        _now: DateTime<Utc>,
    ) -> Result<KeyInstalled, KeyError> {
        let request = request.map(str::to_owned);
        let broken = self.broken_guard() == Some(BrokenGuard::KeyFence);
        let result = self
            .exec("install_reissued_key", move |m: &mut Model| {
                let token = token(fencing_token)?;
                let s = m.subscriptions.get_mut(&subscription).ok_or(KeyError::UnknownSubscription)?;
                if token < s.key_fence && !broken {
                    return Err(KeyError::StaleFencingToken { current: s.key_fence as u64 });
                }
                s.key_fence = token;
                s.activation_status = ActivationStatus::Active;
                let mut replaced = None;
                for k in m.keys.iter_mut().filter(|k| k.subscription == subscription && k.active) {
                    k.active = false;
                    replaced = Some(k.key.panel_key_id.clone());
                }
                let key_id = m.push_reissued_key(subscription, key, request);
                Ok(KeyInstalled { key_id, replaced_panel_key_id: replaced })
            })
            .await;
        let answer = answer(&result);
        self.note(Event::KeyInstall { instance: self.instance, subscription, token: fencing_token, answer });
        result?
    }

    async fn retire_ended(
        &self,
        now: DateTime<Utc>,
        grace: Duration,
        limit: u32,
    ) -> Result<Vec<RetiredKey>, StoreError> {
        Ok(self
            .exec("retire_ended", move |m: &mut Model| {
                let before = now - chrono::Duration::seconds(grace.as_secs() as i64);
                let mut ended: Vec<(DateTime<Utc>, SubscriptionId, UserId)> = m
                    .subscriptions
                    .values()
                    .filter(|s| s.expires_at <= before && s.activation_status == ActivationStatus::Active)
                    .map(|s| (s.expires_at, s.id, s.user))
                    .collect();
                ended.sort();
                ended.truncate(limit as usize);
                let mut parked: Vec<SubscriptionId> = m
                    .subscriptions
                    .values()
                    .filter(|s| {
                        s.activation_status == ActivationStatus::Pending
                            && s.expires_at <= before
                            && s.activation_next_at != Some(DateTime::<Utc>::MAX_UTC)
                    })
                    .map(|s| s.id)
                    .collect();
                parked.truncate(limit as usize);
                for id in parked {
                    let s = m.subscriptions.get_mut(&id).expect("found");
                    s.activation_next_at = Some(DateTime::<Utc>::MAX_UTC);
                    s.activation_attempts = 0;
                }
                let mut retired = Vec::new();
                for (_, id, user) in ended {
                    let s = m.subscriptions.get_mut(&id).expect("found");
                    s.activation_status = ActivationStatus::Pending;
                    s.activation_attempts = 0;
                    // 'infinity': parked until a purchase or renewal.
                    s.activation_next_at = Some(DateTime::<Utc>::MAX_UTC);
                    for k in m.keys.iter_mut().filter(|k| k.subscription == id && k.active) {
                        k.active = false;
                        retired.push(RetiredKey { subscription: id, user, panel_key_id: k.key.panel_key_id.clone() });
                    }
                }
                retired
            })
            .await?)
    }

    async fn keys_to_revoke(&self, limit: u32) -> Result<Vec<KeyToRevoke>, StoreError> {
        Ok(self
            .exec("keys_to_revoke", move |m: &mut Model| {
                let mut keys: Vec<KeyToRevoke> = m
                    .keys
                    .iter()
                    .filter(|k| !k.active && !k.panel_revoked)
                    .map(|k| KeyToRevoke { key_id: k.id, panel_key_id: k.key.panel_key_id.clone() })
                    .collect();
                keys.sort_by_key(|k| k.key_id);
                keys.truncate(limit as usize);
                keys
            })
            .await?)
    }

    async fn revoked_at_panel(&self, key_ids: Vec<i64>, _now: DateTime<Utc>) -> Result<(), StoreError> {
        Ok(self
            .exec("revoked_at_panel", move |m: &mut Model| {
                for k in m.keys.iter_mut().filter(|k| !k.active && key_ids.contains(&k.id)) {
                    k.panel_revoked = true;
                }
            })
            .await?)
    }

    async fn key_census(
        &self,
        panel_key_ids: Vec<String>,
        subscriptions: Vec<SubscriptionId>,
    ) -> Result<KeyCensus, StoreError> {
        Ok(self
            .exec("key_census", move |m: &mut Model| {
                let mut recorded: std::collections::BTreeMap<String, bool> = std::collections::BTreeMap::new();
                for k in m.keys.iter().filter(|k| panel_key_ids.contains(&k.key.panel_key_id)) {
                    *recorded.entry(k.key.panel_key_id.clone()).or_default() |= k.active;
                }
                let mut facts: Vec<KeyFacts> = m
                    .subscriptions
                    .values()
                    .filter(|s| subscriptions.contains(&s.id))
                    .map(|s| KeyFacts {
                        subscription: s.id,
                        key_fence: s.key_fence as u64,
                        keys_recorded: m.keys.iter().filter(|k| k.subscription == s.id).count() as u32,
                    })
                    .collect();
                facts.sort_by_key(|f| f.subscription);
                KeyCensus { recorded: recorded.into_iter().collect(), facts }
            })
            .await?)
    }
}

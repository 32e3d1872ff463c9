//! Promo codes in the model: creation, and the read-only check.

use atlas::domain::{PromoCode, PromoId, UserId};
use atlas::ports::store::*;
use chrono::{DateTime, Utc};

use super::{Model, PromoRow};
use crate::store_host::SimStore;

impl Promos for SimStore {
    async fn create_promo(&self, p: NewPromo, _now: DateTime<Utc>) -> Result<(), PromoCreateError> {
        self.exec("create_promo", move |m: &mut Model| {
            p.check()?;
            if m.promos.contains_key(p.code.as_str()) {
                return Err(PromoCreateError::AlreadyExists);
            }
            let row = PromoRow {
                id: m.next(PromoId::new),
                discount: p.discount,
                max_uses: p.max_uses.map(|n| n.get()),
                used_count: 0,
                active: true,
                expires_at: p.expires_at,
            };
            m.promos.insert(p.code.as_str().to_owned(), row);
            m.audit(p.created_by, "promo_create", None, None, None);
            Ok(())
        })
        .await?
    }

    async fn disable_promo(
        &self,
        code: &PromoCode,
        admin: UserId,
        _correlation_id: Option<String>,
        _now: DateTime<Utc>,
    ) -> Result<Applied, PromoDisableError> {
        let code = code.clone();
        self.exec("disable_promo", move |m: &mut Model| {
            let promo = m.promos.get_mut(code.as_str()).ok_or(PromoDisableError::NotFound)?;
            if !promo.active {
                return Ok(Applied::Duplicate);
            }
            promo.active = false;
            m.audit(admin, "promo_disable", None, None, None);
            Ok(Applied::Done)
        })
        .await?
    }

    async fn validate_promo(
        &self,
        user: UserId,
        code: &PromoCode,
        now: DateTime<Utc>,
    ) -> Result<PromoQuote, PromoError> {
        let code = code.clone();
        self.exec("validate_promo", move |m: &mut Model| {
            m.promo_checks.push((user, code.as_str().to_owned(), crate::clock::sim_now()));
            // The read-only check orders its refusals as `validate_promo` of the PostgreSQL adapter.
            let p = m.promos.get(code.as_str()).ok_or(PromoRefusal::NotFound)?;
            let refusal = if !p.active {
                Some(PromoRefusal::Disabled)
            } else if p.expires_at.is_some_and(|at| at <= now) {
                Some(PromoRefusal::Expired)
            } else if m.redemptions.contains_key(&(p.id, user)) {
                Some(PromoRefusal::AlreadyUsedByUser)
            } else if p.max_uses.is_some_and(|max| p.used_count >= max) {
                Some(PromoRefusal::Exhausted)
            } else {
                None
            };
            match refusal {
                Some(r) => Err(r.into()),
                None => Ok(PromoQuote { code: code.clone(), discount: p.discount }),
            }
        })
        .await?
    }
}

//! The Redis key layout. Every key starts with `<prefix>:<env>:<bot id>`, so environments and
//! bots sharing one Redis never meet; every key of one user carries the hash tag `{u:<id>}`, so
//! each script touches one Redis Cluster slot. Keys are built only from integers and fixed names:
//! nothing a user types ever becomes part of a key.

use crate::domain::UserId;
use crate::ports::coordination::{LimitedAction, LockName, Role};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpace {
    base: String,
}

impl KeySpace {
    /// `prefix` is validated by the settings (`a-z 0-9 _ -`); `env` is a fixed environment name.
    pub fn new(prefix: &str, env: &str, bot_id: i64) -> KeySpace {
        KeySpace { base: format!("{prefix}:{env}:{bot_id}") }
    }

    /// The part every key starts with (for scans in tests and operations).
    pub fn base(&self) -> &str {
        &self.base
    }

    fn user_key(&self, user: UserId, name: &str) -> String {
        format!("{}:{{u:{}}}:{name}", self.base, user.get())
    }

    pub fn fsm(&self, user: UserId) -> String {
        self.user_key(user, "fsm")
    }

    pub fn lease(&self, user: UserId) -> String {
        self.user_key(user, "lease")
    }

    /// The marker of one update: in progress while its handler holds the lease, then done.
    pub fn update(&self, user: UserId, update_id: i64) -> String {
        self.user_key(user, &format!("upd:{update_id}"))
    }

    pub fn flood(&self, user: UserId) -> String {
        self.user_key(user, "rl:flood")
    }

    pub fn limit(&self, user: UserId, action: LimitedAction) -> String {
        self.user_key(user, &format!("rl:{}", action.name()))
    }

    pub fn lock(&self, lock: LockName) -> String {
        match lock {
            LockName::KeyReissue(user) => self.user_key(user, "lock:reissue"),
        }
    }

    /// The last fencing token issued for a lock (same slot as the lock).
    pub fn fence(&self, lock: LockName) -> String {
        match lock {
            LockName::KeyReissue(user) => self.user_key(user, "fence:reissue"),
        }
    }

    /// Written by the health check (a replica or a demoted primary refuses the write).
    pub fn health(&self) -> String {
        format!("{}:{{health}}", self.base)
    }

    pub fn leader(&self, role: Role) -> String {
        format!("{}:{{leader:{}}}:lease", self.base, role.name())
    }

    pub fn leader_epoch(&self, role: Role) -> String {
        format!("{}:{{leader:{}}}:epoch", self.base, role.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_prefix_env_bot_and_one_hash_tag_per_user() {
        let k = KeySpace::new("atlas", "prod", 777);
        let u = UserId::new(42).unwrap();
        assert_eq!(k.fsm(u), "atlas:prod:777:{u:42}:fsm");
        assert_eq!(k.update(u, 9001), "atlas:prod:777:{u:42}:upd:9001");
        assert_eq!(k.limit(u, LimitedAction::PromoAttempt), "atlas:prod:777:{u:42}:rl:promo");
        assert_eq!(k.lock(LockName::KeyReissue(u)), "atlas:prod:777:{u:42}:lock:reissue");
        assert_eq!(k.leader(Role::Poller), "atlas:prod:777:{leader:poller}:lease");
        let tag = |key: &str| key[key.find('{').unwrap()..=key.find('}').unwrap()].to_owned();
        for key in [k.fsm(u), k.lease(u), k.update(u, 1), k.flood(u), k.fence(LockName::KeyReissue(u))] {
            assert_eq!(tag(&key), "{u:42}");
        }
    }
}

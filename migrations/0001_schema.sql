-- Atlas Secure schema: users, catalogue, subscriptions, keys, the balance ledger and every
-- table that makes a money operation idempotent. PostgreSQL is the only place money and keys
-- are guarded; Redis coordination (FSM, locks, limits, leases) may fail or be wiped and none of
-- the guarantees written here may depend on it.
--
-- Money is held in minor units (kopecks) as BIGINT: no floating point anywhere.
-- Every time column is written from the application's Clock port (never now()), so the
-- simulation and the tests control time.

-- A Telegram user known to the bot. `balance` is a cache of the ledger (see balance_ledger):
-- only the ledger trigger may change it, and the CHECK refuses any transaction that would
-- leave it negative.
CREATE TABLE users (
    telegram_id   BIGINT PRIMARY KEY CHECK (telegram_id > 0),
    language      TEXT NOT NULL DEFAULT 'ru' CHECK (language IN ('ru', 'en')),
    -- Who invited this user (deep link /start ref_<id>); set once at registration, never self.
    referrer_id   BIGINT REFERENCES users (telegram_id) CHECK (referrer_id <> telegram_id),
    trial_used    BOOLEAN NOT NULL DEFAULT FALSE,
    banned        BOOLEAN NOT NULL DEFAULT FALSE,
    balance       BIGINT NOT NULL DEFAULT 0 CONSTRAINT users_balance_non_negative CHECK (balance >= 0),
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX users_referrer_idx ON users (referrer_id) WHERE referrer_id IS NOT NULL;

-- The referral relation, read-only: the link itself lives in users.referrer_id so that it can
-- never disagree with a second copy.
CREATE VIEW referrals AS
    SELECT telegram_id AS referred_id, referrer_id, created_at
    FROM users WHERE referrer_id IS NOT NULL;

-- Tariffs on sale and their periods. A tariff that is switched off keeps its rows so old
-- subscriptions still name it; it just cannot be bought or auto-renewed.
CREATE TABLE tariffs (
    id            BIGSERIAL PRIMARY KEY,
    code          TEXT NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9_]{1,32}$'),
    title         TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 64),
    device_limit  INT NOT NULL CHECK (device_limit BETWEEN 1 AND 10),
    is_active     BOOLEAN NOT NULL DEFAULT TRUE
);

CREATE TABLE tariff_periods (
    tariff_id     BIGINT NOT NULL REFERENCES tariffs (id),
    days          INT NOT NULL CHECK (days BETWEEN 1 AND 3660),
    price         BIGINT NOT NULL CHECK (price > 0),
    PRIMARY KEY (tariff_id, days)
);

-- One subscription per user; buying again extends it from the later of now and its expiry,
-- so leftover days are never lost.
CREATE TABLE subscriptions (
    id                    BIGSERIAL PRIMARY KEY,
    user_id               BIGINT NOT NULL UNIQUE REFERENCES users (telegram_id),
    tariff_id             BIGINT NOT NULL REFERENCES tariffs (id),
    -- The period auto-renewal buys again.
    period_days           INT NOT NULL CHECK (period_days BETWEEN 1 AND 3660),
    expires_at            TIMESTAMPTZ NOT NULL,
    is_trial              BOOLEAN NOT NULL DEFAULT FALSE,
    auto_renew            BOOLEAN NOT NULL DEFAULT FALSE,
    last_auto_renewal_at  TIMESTAMPTZ,
    -- Creating the first VPN key at the panel: pending -> active, or failed after a bounded
    -- number of attempts (the activation worker retries; the bound stops an endless loop).
    activation_status     TEXT NOT NULL DEFAULT 'pending'
                          CHECK (activation_status IN ('pending', 'active', 'failed')),
    activation_attempts   INT NOT NULL DEFAULT 0 CHECK (activation_attempts BETWEEN 0 AND 5),
    activation_error      TEXT,
    -- Highest fencing token under which a key was written. A key reissue holding an older token
    -- (its Redis lock expired and someone else took it) is refused here.
    key_fence             BIGINT NOT NULL DEFAULT 0 CHECK (key_fence >= 0),
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX subscriptions_renewal_idx ON subscriptions (expires_at) WHERE auto_renew;
CREATE INDEX subscriptions_activation_idx ON subscriptions (id) WHERE activation_status = 'pending';

-- VPN keys as issued by the panel. At most one active key per subscription; a reissue revokes
-- the old one in the same transaction that writes the new one.
CREATE TABLE vpn_keys (
    id              BIGSERIAL PRIMARY KEY,
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id),
    panel_key_id    TEXT NOT NULL CHECK (length(panel_key_id) BETWEEN 1 AND 128),
    -- The access URI the user pastes into the client: a credential, never logged.
    access_uri      TEXT NOT NULL CHECK (length(access_uri) BETWEEN 1 AND 2048),
    -- The reissue lock's fencing token this key was written under (0: first activation).
    fencing_token   BIGINT NOT NULL CHECK (fencing_token >= 0),
    status          TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at      TIMESTAMPTZ NOT NULL,
    revoked_at      TIMESTAMPTZ,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
CREATE UNIQUE INDEX vpn_keys_one_active ON vpn_keys (subscription_id) WHERE status = 'active';

-- Promo codes. Consumption is the audit's atomic conditional UPDATE (used_count < max_uses,
-- active, not expired) plus one redemption row per (promo, user).
CREATE TABLE promo_codes (
    id                BIGSERIAL PRIMARY KEY,
    code              TEXT NOT NULL UNIQUE CHECK (code ~ '^[A-Z0-9_-]{3,32}$'),
    discount_percent  INT NOT NULL CHECK (discount_percent BETWEEN 1 AND 100),
    max_uses          INT CHECK (max_uses > 0),
    used_count        INT NOT NULL DEFAULT 0 CHECK (used_count >= 0),
    is_active         BOOLEAN NOT NULL DEFAULT TRUE,
    expires_at        TIMESTAMPTZ,
    created_by        BIGINT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    CONSTRAINT promo_used_within_max CHECK (max_uses IS NULL OR used_count <= max_uses)
);

-- Purchases of a tariff period. Paid from the balance they are born 'paid'; paid by crypto or
-- Telegram Stars they wait in 'pending' until finalize_purchase (only from pending), or are
-- cancelled/expired, which gives back the promo use they reserved.
CREATE TABLE pending_purchases (
    id            BIGSERIAL PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users (telegram_id),
    tariff_id     BIGINT NOT NULL REFERENCES tariffs (id),
    period_days   INT NOT NULL CHECK (period_days BETWEEN 1 AND 3660),
    base_price    BIGINT NOT NULL CHECK (base_price > 0),
    promo_id      BIGINT REFERENCES promo_codes (id),
    -- What the user pays after the discount; 0 only with a 100% promo code.
    amount        BIGINT NOT NULL CHECK (amount >= 0 AND amount <= base_price),
    method        TEXT NOT NULL CHECK (method IN ('balance', 'crypto', 'stars')),
    status        TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'cancelled', 'expired')),
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    paid_at       TIMESTAMPTZ,
    CHECK ((status = 'paid') = (paid_at IS NOT NULL))
);
CREATE INDEX pending_purchases_open_idx ON pending_purchases (expires_at) WHERE status = 'pending';

CREATE TABLE promo_redemptions (
    promo_id      BIGINT NOT NULL REFERENCES promo_codes (id),
    user_id       BIGINT NOT NULL REFERENCES users (telegram_id),
    purchase_id   BIGINT NOT NULL UNIQUE REFERENCES pending_purchases (id),
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (promo_id, user_id)
);

-- Money received from a payment provider. The unique (provider, provider_payment_id) is what
-- makes a callback delivered twice harmless: the second insert finds the first.
CREATE TABLE payments (
    id                  BIGSERIAL PRIMARY KEY,
    provider            TEXT NOT NULL CHECK (provider IN ('crypto', 'stars')),
    provider_payment_id TEXT NOT NULL CHECK (length(provider_payment_id) BETWEEN 1 AND 128),
    user_id             BIGINT NOT NULL REFERENCES users (telegram_id),
    amount              BIGINT NOT NULL CHECK (amount > 0),
    -- 'topup' credits the balance; 'purchase' pays a pending purchase directly.
    purpose             TEXT NOT NULL CHECK (purpose IN ('topup', 'purchase')),
    -- The purchase this payment was made for. A 'topup' may name one too: money that arrived
    -- for a purchase that was already paid, cancelled or expired goes to the balance, never lost.
    purchase_id         BIGINT REFERENCES pending_purchases (id),
    created_at          TIMESTAMPTZ NOT NULL,
    UNIQUE (provider, provider_payment_id),
    CHECK (purpose <> 'purchase' OR purchase_id IS NOT NULL)
);
-- A purchase is paid by at most one payment.
CREATE UNIQUE INDEX payments_one_per_purchase ON payments (purchase_id) WHERE purpose = 'purchase';

-- Idempotency keys for operations the user can trigger twice (a double tap on "Pay from
-- balance", a redelivered update): the second call returns the first call's purchase.
CREATE TABLE payment_idempotency_keys (
    key           TEXT PRIMARY KEY CHECK (length(key) BETWEEN 8 AND 128),
    user_id       BIGINT NOT NULL REFERENCES users (telegram_id),
    purchase_id   BIGINT NOT NULL REFERENCES pending_purchases (id),
    created_at    TIMESTAMPTZ NOT NULL
);

-- Withdrawal requests. Creating one moves the amount out of the balance at once (a
-- 'withdrawal_hold' ledger entry), so it cannot be spent twice; rejecting gives it back.
-- Approve and reject act only on 'pending'.
CREATE TABLE withdrawal_requests (
    id            BIGSERIAL PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users (telegram_id),
    amount        BIGINT NOT NULL CHECK (amount > 0),
    requisites    TEXT NOT NULL CHECK (length(requisites) BETWEEN 5 AND 256),
    status        TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    created_at    TIMESTAMPTZ NOT NULL,
    decided_at    TIMESTAMPTZ,
    decided_by    BIGINT,
    reject_reason TEXT,
    CHECK ((status = 'pending') = (decided_at IS NULL AND decided_by IS NULL))
);
CREATE INDEX withdrawal_requests_pending_idx ON withdrawal_requests (created_at) WHERE status = 'pending';

-- Referral rewards: at most one per purchase, whoever calls and however often.
CREATE TABLE referral_rewards (
    id            BIGSERIAL PRIMARY KEY,
    referrer_id   BIGINT NOT NULL REFERENCES users (telegram_id),
    buyer_id      BIGINT NOT NULL REFERENCES users (telegram_id),
    purchase_id   BIGINT NOT NULL UNIQUE REFERENCES pending_purchases (id),
    amount        BIGINT NOT NULL CHECK (amount > 0),
    created_at    TIMESTAMPTZ NOT NULL
);

-- Everything an admin did, for accountability. Append-only (see the trigger below).
CREATE TABLE admin_audit_log (
    id              BIGSERIAL PRIMARY KEY,
    admin_id        BIGINT NOT NULL,
    action          TEXT NOT NULL CHECK (length(action) BETWEEN 1 AND 64),
    target_user_id  BIGINT,
    details         JSONB NOT NULL DEFAULT '{}'::jsonb,
    correlation_id  TEXT,
    created_at      TIMESTAMPTZ NOT NULL
);

-- The balance ledger: the only way a balance changes. Append-only. `reference` names what
-- caused the entry and is unique per kind, a last line of defence against a double effect
-- (one 'topup' per payment, one 'purchase' per purchase, one 'withdrawal_hold' per request...).
CREATE TABLE balance_ledger (
    id              BIGSERIAL PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users (telegram_id),
    amount          BIGINT NOT NULL CHECK (amount <> 0),
    kind            TEXT NOT NULL CHECK (kind IN (
                        'topup', 'admin_credit', 'admin_debit', 'purchase', 'referral_reward',
                        'withdrawal_hold', 'withdrawal_release', 'auto_renewal')),
    reference       TEXT NOT NULL CHECK (length(reference) BETWEEN 1 AND 160),
    -- The balance right after this entry, filled in by the trigger.
    balance_after   BIGINT NOT NULL CHECK (balance_after >= 0),
    created_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (kind, reference),
    -- Credits and debits by kind: a purchase never adds money, a top-up never takes it.
    CHECK (CASE WHEN kind IN ('admin_debit', 'purchase', 'withdrawal_hold', 'auto_renewal')
                THEN amount < 0 ELSE amount > 0 END)
);
CREATE INDEX balance_ledger_user_idx ON balance_ledger (user_id, id);

-- Auto-renewal claims: one row per (subscription, period), where the period is named by the
-- expiry being renewed. A second worker, or the same one after a crash, finds the row and
-- skips, so a period is never charged twice.
CREATE TABLE auto_renewals (
    id              BIGSERIAL PRIMARY KEY,
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id),
    period_start    TIMESTAMPTZ NOT NULL,
    outcome         TEXT NOT NULL CHECK (outcome IN ('renewed', 'insufficient_funds', 'tariff_unavailable')),
    amount          BIGINT NOT NULL CHECK (amount >= 0),
    created_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (subscription_id, period_start)
);

-- Reminders and notices: one row per (subscription, kind, threshold) claimed before sending,
-- so two leaders, or a leader after a restart, never send the same notice twice.
CREATE TABLE notice_deliveries (
    id              BIGSERIAL PRIMARY KEY,
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id),
    kind            TEXT NOT NULL CHECK (kind IN ('expiry_reminder', 'trial_notice', 'renewal_failed', 'expired')),
    -- Which threshold of which period, e.g. '72h@1767225600' (hours before the expiry, and
    -- the expiry as unix seconds, so the next period's reminders are new rows).
    threshold       TEXT NOT NULL CHECK (length(threshold) BETWEEN 1 AND 64),
    claimed_at      TIMESTAMPTZ NOT NULL,
    sent_at         TIMESTAMPTZ,
    UNIQUE (subscription_id, kind, threshold)
);

-- The balance cache follows the ledger: each entry moves users.balance and records the result.
-- The users CHECK then refuses the whole transaction if a balance would go below zero.
CREATE FUNCTION atlas_ledger_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE users SET balance = balance + NEW.amount
        WHERE telegram_id = NEW.user_id
        RETURNING balance INTO NEW.balance_after;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'UNKNOWN_USER';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER balance_ledger_apply BEFORE INSERT ON balance_ledger
    FOR EACH ROW EXECUTE FUNCTION atlas_ledger_apply();

-- Nothing but the ledger trigger writes users.balance (it runs one trigger level down).
CREATE FUNCTION atlas_guard_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.balance <> 0 THEN
        RAISE EXCEPTION 'BALANCE_WRITE_OUTSIDE_LEDGER';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.balance IS DISTINCT FROM OLD.balance AND pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'BALANCE_WRITE_OUTSIDE_LEDGER';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER users_guard_balance BEFORE INSERT OR UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION atlas_guard_balance();

-- Append-only tables refuse updates and deletes.
CREATE FUNCTION atlas_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'APPEND_ONLY: %', TG_TABLE_NAME;
END $$;
CREATE TRIGGER balance_ledger_append_only BEFORE UPDATE OR DELETE ON balance_ledger
    FOR EACH ROW EXECUTE FUNCTION atlas_append_only();
CREATE TRIGGER admin_audit_log_append_only BEFORE UPDATE OR DELETE ON admin_audit_log
    FOR EACH ROW EXECUTE FUNCTION atlas_append_only();

-- The catalogue the bot starts with; admins change prices with SQL for now.
INSERT INTO tariffs (code, title, device_limit) VALUES ('basic', 'Basic', 1), ('family', 'Family', 5);
INSERT INTO tariff_periods (tariff_id, days, price)
    SELECT t.id, p.days, p.price * CASE t.code WHEN 'family' THEN 2 ELSE 1 END
    FROM tariffs t,
         (VALUES (30, 19900), (90, 54900), (180, 99900), (365, 179900)) AS p (days, price);

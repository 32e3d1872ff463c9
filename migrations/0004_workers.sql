-- What the background workers need: activation with backoff, keys retired when a subscription
-- ends, the notices the workers send, the reminder scan's index, and broadcast deliveries
-- claimed once per recipient.

-- When activation may next be tried: '-infinity', now (so the scan is one index range that stops
-- at now); a worker that takes a subscription sets it a
-- minute ahead (its claim), a failed attempt to the end of its backoff, and a subscription that
-- ended to 'infinity' (until a purchase or renewal brings it back). Attempts are counted per
-- subscription, up to 10 (backoff 30 s doubling to an hour: about 3 hours in all).
ALTER TABLE subscriptions ADD COLUMN activation_next_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity';
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_activation_attempts_check;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_activation_attempts_check
    CHECK (activation_attempts BETWEEN 0 AND 10);
DROP INDEX subscriptions_activation_idx;
CREATE INDEX subscriptions_activation_idx ON subscriptions (activation_next_at, id)
    WHERE activation_status = 'pending';

-- The payment watcher grants referral rewards a stopped process left out, over recent payments.
CREATE INDEX pending_purchases_paid_idx ON pending_purchases (paid_at) WHERE status = 'paid';

-- The reminder scan and the expiry cleanup walk subscriptions by expiry.
CREATE INDEX subscriptions_expiry_idx ON subscriptions (expires_at, id);
-- The expiry cleanup looks only at subscriptions with a key, and at pending ones not parked.
CREATE INDEX subscriptions_active_expiry_idx ON subscriptions (expires_at, id) WHERE activation_status = 'active';
CREATE INDEX subscriptions_unparked_idx ON subscriptions (expires_at, id)
    WHERE activation_status = 'pending' AND activation_next_at <> 'infinity';

-- Notices the workers send besides reminders: the key is ready, the key could not be made,
-- the subscription was renewed from the balance.
ALTER TABLE notice_deliveries DROP CONSTRAINT notice_deliveries_kind_check;
ALTER TABLE notice_deliveries ADD CONSTRAINT notice_deliveries_kind_check CHECK (kind IN (
    'expiry_reminder', 'trial_notice', 'renewal_failed', 'expired', 'key_ready', 'activation_failed',
    'renewed'));

-- One row per (broadcast, recipient), claimed before the message is sent: two senders (a
-- paused leader waking up) never send one recipient the same broadcast twice.
CREATE TABLE broadcast_deliveries (
    broadcast_id  BIGINT NOT NULL REFERENCES broadcasts (id),
    user_id       BIGINT NOT NULL REFERENCES users (telegram_id),
    claimed_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (broadcast_id, user_id)
);
ALTER TABLE broadcasts ADD COLUMN sent_count INT NOT NULL DEFAULT 0 CHECK (sent_count >= 0);
CREATE INDEX broadcasts_open_idx ON broadcasts (id) WHERE status <> 'done';

-- A key revoked in the store is revoked at the panel afterwards (an outbox): the expiry cleanup
-- and a reissue write 'revoked' here first, and the cleanup worker revokes at the panel every key
-- not yet revoked there, so a panel that failed once is asked again. Keys revoked before this
-- migration were revoked at the panel by the reissue that replaced them.
ALTER TABLE vpn_keys ADD COLUMN panel_revoked_at TIMESTAMPTZ;
UPDATE vpn_keys SET panel_revoked_at = revoked_at WHERE status = 'revoked';
CREATE INDEX vpn_keys_panel_revoke_idx ON vpn_keys (id) WHERE status = 'revoked' AND panel_revoked_at IS NULL;

-- Subscriptions that ended more than `p_grace_seconds` ago and still have an active key, at most
-- `p_limit`: each key is revoked here (the panel follows, see above) and activation goes back to
-- pending, parked until a later purchase or renewal brings it back for a new key. Locked rows are skipped (another
-- instance is retiring them, or a purchase is extending them).
CREATE FUNCTION atlas_retire_ended(p_now TIMESTAMPTZ, p_grace_seconds INT, p_limit INT)
RETURNS TABLE (subscription_id BIGINT, user_id BIGINT, panel_key_id TEXT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH ended AS (
        SELECT s.id, s.user_id FROM subscriptions s
            WHERE s.expires_at <= p_now - make_interval(secs => p_grace_seconds)
              AND s.activation_status = 'active'
            ORDER BY s.expires_at, s.id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
    ), pending AS (
        UPDATE subscriptions s
            SET activation_status = 'pending', activation_attempts = 0, activation_error = NULL,
                activation_next_at = 'infinity', updated_at = p_now
            FROM ended WHERE s.id = ended.id
            RETURNING s.id
    ), parked AS (
        -- Ended before their key was made: no attempt until a purchase or renewal, which then
        -- starts a fresh set of attempts.
        UPDATE subscriptions s
            SET activation_next_at = 'infinity', activation_attempts = 0, activation_error = NULL, updated_at = p_now
            WHERE s.id IN (SELECT p.id FROM subscriptions p
                           WHERE p.activation_status = 'pending'
                             AND p.expires_at <= p_now - make_interval(secs => p_grace_seconds)
                             AND p.activation_next_at <> 'infinity'
                           ORDER BY p.id LIMIT p_limit FOR UPDATE SKIP LOCKED)
            RETURNING s.id
    )
    UPDATE vpn_keys k SET status = 'revoked', revoked_at = p_now
        FROM ended WHERE k.subscription_id = ended.id AND k.status = 'active'
        RETURNING ended.id, ended.user_id, k.panel_key_id;
END $$;

-- As in 0002; a subscription still waiting for its key (a failed one, one parked when it ended,
-- one backing off) is tried again at once.
CREATE OR REPLACE FUNCTION atlas_extend_subscription(p_user BIGINT, p_tariff BIGINT, p_days INT, p_now TIMESTAMPTZ)
RETURNS subscriptions LANGUAGE plpgsql AS $$
DECLARE
    v_sub subscriptions;
BEGIN
    INSERT INTO subscriptions AS s (user_id, tariff_id, period_days, expires_at, created_at, updated_at)
        VALUES (p_user, p_tariff, p_days, p_now + make_interval(days => p_days), p_now, p_now)
        ON CONFLICT (user_id) DO UPDATE SET
            tariff_id = EXCLUDED.tariff_id,
            period_days = EXCLUDED.period_days,
            expires_at = GREATEST(s.expires_at, p_now) + make_interval(days => p_days),
            is_trial = FALSE,
            activation_status = CASE WHEN s.activation_status = 'failed' THEN 'pending' ELSE s.activation_status END,
            activation_attempts = CASE WHEN s.activation_status = 'failed' THEN 0 ELSE s.activation_attempts END,
            activation_next_at = CASE WHEN s.activation_status = 'active' THEN s.activation_next_at ELSE '-infinity' END,
            updated_at = p_now
        RETURNING * INTO v_sub;
    RETURN v_sub;
END $$;

-- atlas_auto_renew_next for up to `p_limit` due subscriptions in one transaction (the renewal
-- worker's batch): the same claim per (subscription, period), the same outcomes, one commit.
-- A user busy with a purchase is skipped ('busy') and tried on a later tick.
CREATE FUNCTION atlas_auto_renew_batch(p_now TIMESTAMPTZ, p_horizon_seconds INT, p_limit INT)
RETURNS TABLE (outcome TEXT, subscription_id BIGINT, user_id BIGINT, amount BIGINT, expires_at TIMESTAMPTZ)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_sub subscriptions;
    v_price BIGINT;
    v_balance BIGINT;
    v_claim BIGINT;
    v_outcome TEXT;
BEGIN
    FOR v_sub IN
        SELECT s.* FROM subscriptions s
            WHERE s.auto_renew AND NOT s.is_trial
              AND s.expires_at <= p_now + make_interval(secs => p_horizon_seconds)
              AND NOT EXISTS (SELECT 1 FROM auto_renewals r
                              WHERE r.subscription_id = s.id AND r.period_start = s.expires_at)
            ORDER BY s.expires_at, s.id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
    LOOP
        IF NOT pg_try_advisory_xact_lock(v_sub.user_id) THEN
            RETURN QUERY SELECT 'busy'::TEXT, v_sub.id, v_sub.user_id, 0::BIGINT, v_sub.expires_at;
            CONTINUE;
        END IF;
        SELECT tp.price INTO v_price FROM tariff_periods tp JOIN tariffs t ON t.id = tp.tariff_id
            WHERE t.id = v_sub.tariff_id AND tp.days = v_sub.period_days AND t.is_active;
        SELECT balance INTO v_balance FROM users WHERE telegram_id = v_sub.user_id;
        v_outcome := CASE WHEN v_price IS NULL THEN 'tariff_unavailable'
                          WHEN v_balance < v_price THEN 'insufficient_funds'
                          ELSE 'renewed' END;
        v_claim := NULL;
        INSERT INTO auto_renewals (subscription_id, period_start, outcome, amount, created_at)
            VALUES (v_sub.id, v_sub.expires_at, v_outcome,
                    CASE WHEN v_outcome = 'renewed' THEN v_price ELSE 0 END, p_now)
            ON CONFLICT (subscription_id, period_start) DO NOTHING
            RETURNING id INTO v_claim;
        IF v_claim IS NULL THEN
            RETURN QUERY SELECT 'busy'::TEXT, v_sub.id, v_sub.user_id, 0::BIGINT, v_sub.expires_at;
            CONTINUE;
        END IF;
        IF v_outcome <> 'renewed' THEN
            RETURN QUERY SELECT v_outcome, v_sub.id, v_sub.user_id, 0::BIGINT, v_sub.expires_at;
            CONTINUE;
        END IF;
        INSERT INTO balance_ledger (user_id, amount, kind, reference, created_at)
            VALUES (v_sub.user_id, -v_price, 'auto_renewal', 'renewal:' || v_claim, p_now);
        -- A renewed subscription still waiting for its key (failed, or parked when it ended)
        -- is tried again at once, as after a purchase.
        UPDATE subscriptions
            SET expires_at = GREATEST(expires_at, p_now) + make_interval(days => period_days),
                last_auto_renewal_at = p_now, updated_at = p_now,
                activation_status = CASE WHEN activation_status = 'failed' THEN 'pending' ELSE activation_status END,
                activation_attempts = CASE WHEN activation_status = 'failed' THEN 0 ELSE activation_attempts END,
                activation_next_at = CASE WHEN activation_status = 'active' THEN activation_next_at ELSE '-infinity' END
            WHERE id = v_sub.id
            RETURNING * INTO v_sub;
        RETURN QUERY SELECT 'renewed'::TEXT, v_sub.id, v_sub.user_id, v_price, v_sub.expires_at;
    END LOOP;
END $$;

-- One subscription at a time: the batch of one (the 0002 version did not bring a subscription
-- waiting for its key back).
CREATE OR REPLACE FUNCTION atlas_auto_renew_next(p_now TIMESTAMPTZ, p_horizon_seconds INT)
RETURNS TABLE (outcome TEXT, subscription_id BIGINT, user_id BIGINT, amount BIGINT, expires_at TIMESTAMPTZ)
LANGUAGE sql AS $$
    SELECT * FROM atlas_auto_renew_batch(p_now, p_horizon_seconds, 1)
$$;

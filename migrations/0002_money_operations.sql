-- Money operations, one function each. Each runs as a single statement, so it is atomic on its
-- own and costs one round trip: the per-user advisory lock is held only while the server runs
-- the function, not across client round trips (see BENCHMARKS.md for what that buys).
--
-- Refusals are raised as exceptions whose message is a stable code (UNKNOWN_USER,
-- INSUFFICIENT_BALANCE, ...), so the whole function's writes roll back: a refused operation
-- writes nothing. The Rust adapter (app/src/store/postgres.rs) maps each code to a typed error.
-- Outcomes that are not errors (a duplicate callback, an already granted reward) are returned
-- as an `outcome` column.
--
-- Locks, always taken in this order so no two operations can deadlock:
--   1. the per-user advisory lock pg_advisory_xact_lock(user_id) (the audit's key);
--   2. the per-code promo advisory lock pg_advisory_xact_lock(1, hashtext(code)) (two-key form,
--      a separate key space from the users' one-key form);
--   3. row locks (SELECT ... FOR UPDATE, UPDATE).
-- The auto-renewal claim holds a row lock before it knows the user, so it only *tries* the user
-- lock and backs off.

-- Takes the per-user lock and returns the user; refuses unknown and banned users.
CREATE FUNCTION atlas_lock_user(p_user BIGINT) RETURNS users LANGUAGE plpgsql AS $$
DECLARE
    v_user users;
BEGIN
    PERFORM pg_advisory_xact_lock(p_user);
    SELECT * INTO v_user FROM users WHERE telegram_id = p_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'UNKNOWN_USER';
    END IF;
    IF v_user.banned THEN
        RAISE EXCEPTION 'USER_BANNED';
    END IF;
    RETURN v_user;
END $$;

-- The price of an active tariff period.
CREATE FUNCTION atlas_price(p_tariff_code TEXT, p_days INT, OUT tariff_id BIGINT, OUT price BIGINT)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT t.id, tp.price INTO tariff_id, price
        FROM tariffs t JOIN tariff_periods tp ON tp.tariff_id = t.id
        WHERE t.code = p_tariff_code AND tp.days = p_days AND t.is_active;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'UNKNOWN_TARIFF';
    END IF;
END $$;

-- What the user pays: the discount is rounded down, so the shop never gives more than promised.
CREATE FUNCTION atlas_discounted(p_price BIGINT, p_percent INT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE AS $$ SELECT p_price - (p_price * p_percent) / 100 $$;

-- Consumes one use of a promo code for a user: the audit's atomic conditional UPDATE (active,
-- not expired, used_count < max_uses) under the per-code lock. The caller writes the redemption
-- row, whose primary key (promo, user) makes a second use by the same user impossible.
CREATE FUNCTION atlas_consume_promo(p_code TEXT, p_user BIGINT, p_now TIMESTAMPTZ) RETURNS promo_codes
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_promo promo_codes;
BEGIN
    PERFORM pg_advisory_xact_lock(1, hashtext(p_code));
    IF EXISTS (SELECT 1 FROM promo_redemptions r JOIN promo_codes c ON c.id = r.promo_id
               WHERE c.code = p_code AND r.user_id = p_user) THEN
        RAISE EXCEPTION 'PROMO_ALREADY_USED_BY_USER';
    END IF;
    UPDATE promo_codes SET used_count = used_count + 1
        WHERE code = p_code
          AND is_active
          AND (expires_at IS NULL OR expires_at > p_now)
          AND (max_uses IS NULL OR used_count < max_uses)
        RETURNING * INTO v_promo;
    IF FOUND THEN
        RETURN v_promo;
    END IF;
    -- Say why, for the reply; the UPDATE above is what decided.
    SELECT * INTO v_promo FROM promo_codes WHERE code = p_code;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'PROMO_NOT_FOUND';
    ELSIF NOT v_promo.is_active THEN
        RAISE EXCEPTION 'PROMO_DISABLED';
    ELSIF v_promo.expires_at IS NOT NULL AND v_promo.expires_at <= p_now THEN
        RAISE EXCEPTION 'PROMO_EXPIRED';
    END IF;
    RAISE EXCEPTION 'PROMOCODE_ALREADY_USED_OR_EXPIRED';
END $$;

-- Gives back a promo use reserved by a purchase that was cancelled or expired.
CREATE FUNCTION atlas_release_promo(p_purchase BIGINT) RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    v_promo BIGINT;
BEGIN
    DELETE FROM promo_redemptions WHERE purchase_id = p_purchase RETURNING promo_id INTO v_promo;
    IF FOUND THEN
        UPDATE promo_codes SET used_count = used_count - 1 WHERE id = v_promo;
    END IF;
END $$;

-- Adds a paid period to the user's subscription, from the later of now and the current expiry.
-- A failed activation gets a fresh set of attempts; a trial becomes a paid subscription.
CREATE FUNCTION atlas_extend_subscription(p_user BIGINT, p_tariff BIGINT, p_days INT, p_now TIMESTAMPTZ)
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
            updated_at = p_now
        RETURNING * INTO v_sub;
    RETURN v_sub;
END $$;

-- Opens a purchase row and reserves its promo use. Shared by the balance and provider paths.
CREATE FUNCTION atlas_open_purchase(
    p_user BIGINT, p_tariff_code TEXT, p_days INT, p_promo_code TEXT, p_method TEXT,
    p_status TEXT, p_expires_at TIMESTAMPTZ, p_now TIMESTAMPTZ
) RETURNS pending_purchases LANGUAGE plpgsql AS $$
DECLARE
    v_price RECORD;
    v_promo promo_codes;
    v_purchase pending_purchases;
BEGIN
    SELECT * INTO v_price FROM atlas_price(p_tariff_code, p_days);
    IF p_promo_code IS NOT NULL THEN
        v_promo := atlas_consume_promo(p_promo_code, p_user, p_now);
    END IF;
    INSERT INTO pending_purchases
        (user_id, tariff_id, period_days, base_price, promo_id, amount, method, status,
         created_at, expires_at, paid_at)
        VALUES (p_user, v_price.tariff_id, p_days, v_price.price, v_promo.id,
                CASE WHEN v_promo.id IS NULL THEN v_price.price
                     ELSE atlas_discounted(v_price.price, v_promo.discount_percent) END,
                p_method, p_status, p_now, p_expires_at,
                CASE WHEN p_status = 'paid' THEN p_now END)
        RETURNING * INTO v_purchase;
    IF v_promo.id IS NOT NULL THEN
        INSERT INTO promo_redemptions (promo_id, user_id, purchase_id, created_at)
            VALUES (v_promo.id, p_user, v_purchase.id, p_now);
    END IF;
    RETURN v_purchase;
END $$;

-- Looks up an idempotency key; refuses a key that another user, or the other kind of purchase
-- (from the balance / through a provider), already used.
CREATE FUNCTION atlas_idempotent_purchase(p_key TEXT, p_user BIGINT, p_from_balance BOOLEAN)
RETURNS pending_purchases LANGUAGE plpgsql AS $$
DECLARE
    v_purchase pending_purchases;
BEGIN
    IF p_key IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT p.* INTO v_purchase FROM payment_idempotency_keys k
        JOIN pending_purchases p ON p.id = k.purchase_id WHERE k.key = p_key;
    IF FOUND AND (v_purchase.user_id <> p_user OR (v_purchase.method = 'balance') <> p_from_balance) THEN
        RAISE EXCEPTION 'IDEMPOTENCY_KEY_REUSED';
    END IF;
    RETURN v_purchase;
END $$;

-- Buys a tariff period from the balance: promo, debit and extension in one transaction under
-- the per-user lock. Replaying the same idempotency key returns the first purchase.
CREATE FUNCTION atlas_purchase_from_balance(
    p_user BIGINT, p_tariff_code TEXT, p_days INT, p_promo_code TEXT, p_idempotency_key TEXT,
    p_now TIMESTAMPTZ
) RETURNS TABLE (outcome TEXT, purchase_id BIGINT, amount BIGINT, expires_at TIMESTAMPTZ, balance BIGINT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_user users;
    v_purchase pending_purchases;
    v_sub subscriptions;
BEGIN
    v_user := atlas_lock_user(p_user);
    v_purchase := atlas_idempotent_purchase(p_idempotency_key, p_user, TRUE);
    IF v_purchase.id IS NOT NULL THEN
        RETURN QUERY SELECT 'duplicate'::TEXT, v_purchase.id, v_purchase.amount, s.expires_at, v_user.balance
            FROM subscriptions s WHERE s.user_id = p_user;
        RETURN;
    END IF;
    v_purchase := atlas_open_purchase(p_user, p_tariff_code, p_days, p_promo_code, 'balance', 'paid', p_now, p_now);
    IF v_user.balance < v_purchase.amount THEN
        RAISE EXCEPTION 'INSUFFICIENT_BALANCE';
    END IF;
    IF v_purchase.amount > 0 THEN
        INSERT INTO balance_ledger (user_id, amount, kind, reference, created_at)
            VALUES (p_user, -v_purchase.amount, 'purchase', 'purchase:' || v_purchase.id, p_now);
    END IF;
    v_sub := atlas_extend_subscription(p_user, v_purchase.tariff_id, p_days, p_now);
    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO payment_idempotency_keys (key, user_id, purchase_id, created_at)
            VALUES (p_idempotency_key, p_user, v_purchase.id, p_now);
    END IF;
    RETURN QUERY SELECT 'purchased'::TEXT, v_purchase.id, v_purchase.amount, v_sub.expires_at,
        v_user.balance - v_purchase.amount;
END $$;

-- Opens a purchase to be paid by a provider (crypto, Telegram Stars). The promo use is reserved
-- now and given back if the purchase is cancelled or expires.
CREATE FUNCTION atlas_create_pending_purchase(
    p_user BIGINT, p_tariff_code TEXT, p_days INT, p_promo_code TEXT, p_method TEXT,
    p_idempotency_key TEXT, p_ttl_seconds INT, p_now TIMESTAMPTZ
) RETURNS TABLE (outcome TEXT, purchase_id BIGINT, amount BIGINT, expires_at TIMESTAMPTZ)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_purchase pending_purchases;
BEGIN
    PERFORM atlas_lock_user(p_user);
    v_purchase := atlas_idempotent_purchase(p_idempotency_key, p_user, FALSE);
    IF v_purchase.id IS NOT NULL THEN
        RETURN QUERY SELECT 'duplicate'::TEXT, v_purchase.id, v_purchase.amount, v_purchase.expires_at;
        RETURN;
    END IF;
    v_purchase := atlas_open_purchase(p_user, p_tariff_code, p_days, p_promo_code, p_method, 'pending',
                                      p_now + make_interval(secs => p_ttl_seconds), p_now);
    -- A 100% promo code leaves nothing a provider could take: such a purchase is made from the
    -- balance (where it costs nothing), never as an unpayable invoice.
    IF v_purchase.amount = 0 THEN
        RAISE EXCEPTION 'NOTHING_TO_PAY';
    END IF;
    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO payment_idempotency_keys (key, user_id, purchase_id, created_at)
            VALUES (p_idempotency_key, p_user, v_purchase.id, p_now);
    END IF;
    RETURN QUERY SELECT 'created'::TEXT, v_purchase.id, v_purchase.amount, v_purchase.expires_at;
END $$;

-- Records a provider's payment for a purchase. Only a pending purchase is finalized; the same
-- provider payment id is never counted twice (a redelivered callback returns 'duplicate');
-- money for a purchase that is no longer pending goes to the balance, never lost.
CREATE FUNCTION atlas_finalize_purchase(
    p_purchase BIGINT, p_provider TEXT, p_provider_payment_id TEXT, p_amount BIGINT, p_now TIMESTAMPTZ
) RETURNS TABLE (outcome TEXT, payment_id BIGINT, expires_at TIMESTAMPTZ)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_purchase pending_purchases;
    v_payment payments;
    v_sub subscriptions;
BEGIN
    SELECT user_id INTO v_purchase.user_id FROM pending_purchases WHERE id = p_purchase;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'UNKNOWN_PURCHASE';
    END IF;
    PERFORM pg_advisory_xact_lock(v_purchase.user_id);
    SELECT * INTO v_purchase FROM pending_purchases WHERE id = p_purchase;
    SELECT * INTO v_payment FROM payments
        WHERE provider = p_provider AND provider_payment_id = p_provider_payment_id;
    IF FOUND THEN
        IF v_payment.purchase_id IS DISTINCT FROM p_purchase OR v_payment.amount <> p_amount THEN
            RAISE EXCEPTION 'PAYMENT_ID_REUSED';
        END IF;
        RETURN QUERY SELECT 'duplicate'::TEXT, v_payment.id,
            (SELECT s.expires_at FROM subscriptions s WHERE s.user_id = v_purchase.user_id);
        RETURN;
    END IF;
    IF v_purchase.method = 'balance' OR v_purchase.method <> p_provider THEN
        RAISE EXCEPTION 'PAYMENT_METHOD_MISMATCH';
    END IF;
    IF p_amount <> v_purchase.amount THEN
        RAISE EXCEPTION 'PAYMENT_AMOUNT_MISMATCH';
    END IF;
    IF v_purchase.status <> 'pending' THEN
        INSERT INTO payments (provider, provider_payment_id, user_id, amount, purpose, purchase_id, created_at)
            VALUES (p_provider, p_provider_payment_id, v_purchase.user_id, p_amount, 'topup', p_purchase, p_now)
            RETURNING * INTO v_payment;
        INSERT INTO balance_ledger (user_id, amount, kind, reference, created_at)
            VALUES (v_purchase.user_id, p_amount, 'topup', 'payment:' || v_payment.id, p_now);
        RETURN QUERY SELECT 'credited_to_balance'::TEXT, v_payment.id,
            (SELECT s.expires_at FROM subscriptions s WHERE s.user_id = v_purchase.user_id);
        RETURN;
    END IF;
    INSERT INTO payments (provider, provider_payment_id, user_id, amount, purpose, purchase_id, created_at)
        VALUES (p_provider, p_provider_payment_id, v_purchase.user_id, p_amount, 'purchase', p_purchase, p_now)
        RETURNING * INTO v_payment;
    UPDATE pending_purchases SET status = 'paid', paid_at = p_now WHERE id = p_purchase AND status = 'pending';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'PURCHASE_CHANGED_CONCURRENTLY';
    END IF;
    v_sub := atlas_extend_subscription(v_purchase.user_id, v_purchase.tariff_id, v_purchase.period_days, p_now);
    RETURN QUERY SELECT 'finalized'::TEXT, v_payment.id, v_sub.expires_at;
END $$;

-- Cancels or expires a pending purchase (only from pending) and gives back its promo use.
CREATE FUNCTION atlas_close_pending_purchase(p_purchase BIGINT, p_status TEXT) RETURNS TEXT
LANGUAGE plpgsql AS $$
DECLARE
    v_status TEXT;
BEGIN
    IF p_status NOT IN ('cancelled', 'expired') THEN
        RAISE EXCEPTION 'INVALID_STATUS';
    END IF;
    -- The buyer's lock, as finalize takes it: a payment being recorded and a cancellation never
    -- interleave (else the purchase could end paid with its promo use given back).
    PERFORM pg_advisory_xact_lock(p.user_id) FROM pending_purchases p WHERE p.id = p_purchase;
    UPDATE pending_purchases SET status = p_status WHERE id = p_purchase AND status = 'pending'
        RETURNING status INTO v_status;
    IF NOT FOUND THEN
        SELECT status INTO v_status FROM pending_purchases WHERE id = p_purchase;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'UNKNOWN_PURCHASE';
        END IF;
        RAISE EXCEPTION 'PURCHASE_NOT_PENDING' USING DETAIL = v_status;
    END IF;
    PERFORM atlas_release_promo(p_purchase);
    RETURN v_status;
END $$;

-- Credits a top-up paid through a provider. The same provider payment id credits once.
CREATE FUNCTION atlas_top_up(
    p_user BIGINT, p_amount BIGINT, p_provider TEXT, p_provider_payment_id TEXT, p_now TIMESTAMPTZ
) RETURNS TABLE (outcome TEXT, payment_id BIGINT, balance BIGINT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_user users;
    v_payment payments;
BEGIN
    -- Money a provider took is recorded even for a banned user (the admin settles it later):
    -- the user lock without the ban check.
    PERFORM pg_advisory_xact_lock(p_user);
    SELECT * INTO v_user FROM users WHERE telegram_id = p_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'UNKNOWN_USER';
    END IF;
    SELECT * INTO v_payment FROM payments
        WHERE provider = p_provider AND provider_payment_id = p_provider_payment_id;
    IF FOUND THEN
        IF v_payment.user_id <> p_user OR v_payment.amount <> p_amount OR v_payment.purpose <> 'topup' THEN
            RAISE EXCEPTION 'PAYMENT_ID_REUSED';
        END IF;
        RETURN QUERY SELECT 'duplicate'::TEXT, v_payment.id, v_user.balance;
        RETURN;
    END IF;
    INSERT INTO payments (provider, provider_payment_id, user_id, amount, purpose, created_at)
        VALUES (p_provider, p_provider_payment_id, p_user, p_amount, 'topup', p_now)
        RETURNING * INTO v_payment;
    INSERT INTO balance_ledger (user_id, amount, kind, reference, created_at)
        VALUES (p_user, p_amount, 'topup', 'payment:' || v_payment.id, p_now);
    RETURN QUERY SELECT 'credited'::TEXT, v_payment.id, v_user.balance + p_amount;
END $$;

-- An admin's credit (p_amount > 0) or debit (p_amount < 0), with its audit log entry.
-- Banned users can still be adjusted: the admin may be settling their account.
CREATE FUNCTION atlas_admin_adjust(
    p_admin BIGINT, p_user BIGINT, p_amount BIGINT, p_reason TEXT, p_correlation_id TEXT, p_now TIMESTAMPTZ
) RETURNS TABLE (audit_id BIGINT, balance BIGINT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_balance BIGINT;
    v_audit BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(p_user);
    SELECT balance INTO v_balance FROM users WHERE telegram_id = p_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'UNKNOWN_USER';
    END IF;
    IF p_amount < 0 AND v_balance < -p_amount THEN
        RAISE EXCEPTION 'INSUFFICIENT_BALANCE';
    END IF;
    INSERT INTO admin_audit_log (admin_id, action, target_user_id, details, correlation_id, created_at)
        VALUES (p_admin, CASE WHEN p_amount > 0 THEN 'admin_credit' ELSE 'admin_debit' END, p_user,
                jsonb_build_object('amount', p_amount, 'reason', p_reason), p_correlation_id, p_now)
        RETURNING id INTO v_audit;
    INSERT INTO balance_ledger (user_id, amount, kind, reference, created_at)
        VALUES (p_user, p_amount, CASE WHEN p_amount > 0 THEN 'admin_credit' ELSE 'admin_debit' END,
                'audit:' || v_audit, p_now);
    RETURN QUERY SELECT v_audit, v_balance + p_amount;
END $$;

-- Rewards the buyer's referrer for a paid purchase: a percentage, once per purchase.
CREATE FUNCTION atlas_grant_referral_reward(p_purchase BIGINT, p_percent INT, p_now TIMESTAMPTZ)
RETURNS TABLE (outcome TEXT, referrer_id BIGINT, amount BIGINT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_purchase pending_purchases;
    v_referrer BIGINT;
    v_amount BIGINT;
    v_reward BIGINT;
BEGIN
    SELECT * INTO v_purchase FROM pending_purchases WHERE id = p_purchase;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'UNKNOWN_PURCHASE';
    END IF;
    SELECT u.referrer_id INTO v_referrer FROM users u WHERE u.telegram_id = v_purchase.user_id;
    IF v_purchase.status <> 'paid' THEN
        RAISE EXCEPTION 'PURCHASE_NOT_PAID';
    END IF;
    IF v_referrer IS NULL THEN
        RETURN QUERY SELECT 'no_referrer'::TEXT, NULL::BIGINT, 0::BIGINT;
        RETURN;
    END IF;
    v_amount := v_purchase.amount * p_percent / 100;
    IF v_amount <= 0 THEN
        RETURN QUERY SELECT 'nothing_to_reward'::TEXT, v_referrer, 0::BIGINT;
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(v_referrer);
    INSERT INTO referral_rewards (referrer_id, buyer_id, purchase_id, amount, created_at)
        VALUES (v_referrer, v_purchase.user_id, p_purchase, v_amount, p_now)
        ON CONFLICT (purchase_id) DO NOTHING
        RETURNING id INTO v_reward;
    IF v_reward IS NULL THEN
        RETURN QUERY SELECT 'duplicate'::TEXT, v_referrer, r.amount FROM referral_rewards r WHERE r.purchase_id = p_purchase;
        RETURN;
    END IF;
    INSERT INTO balance_ledger (user_id, amount, kind, reference, created_at)
        VALUES (v_referrer, v_amount, 'referral_reward', 'purchase:' || p_purchase, p_now);
    RETURN QUERY SELECT 'granted'::TEXT, v_referrer, v_amount;
END $$;

-- Creates a withdrawal request and holds its amount out of the balance at once.
CREATE FUNCTION atlas_create_withdrawal(
    p_user BIGINT, p_amount BIGINT, p_requisites TEXT, p_min_amount BIGINT, p_now TIMESTAMPTZ
) RETURNS TABLE (withdrawal_id BIGINT, balance BIGINT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_user users;
    v_id BIGINT;
BEGIN
    v_user := atlas_lock_user(p_user);
    IF p_amount < p_min_amount THEN
        RAISE EXCEPTION 'WITHDRAWAL_BELOW_MINIMUM';
    END IF;
    IF v_user.balance < p_amount THEN
        RAISE EXCEPTION 'INSUFFICIENT_BALANCE';
    END IF;
    INSERT INTO withdrawal_requests (user_id, amount, requisites, status, created_at)
        VALUES (p_user, p_amount, p_requisites, 'pending', p_now)
        RETURNING id INTO v_id;
    INSERT INTO balance_ledger (user_id, amount, kind, reference, created_at)
        VALUES (p_user, -p_amount, 'withdrawal_hold', 'withdrawal:' || v_id, p_now);
    RETURN QUERY SELECT v_id, v_user.balance - p_amount;
END $$;

-- Approves or rejects a withdrawal, only from pending. Rejecting returns the held amount.
CREATE FUNCTION atlas_decide_withdrawal(
    p_withdrawal BIGINT, p_admin BIGINT, p_approve BOOLEAN, p_reason TEXT, p_correlation_id TEXT,
    p_now TIMESTAMPTZ
) RETURNS TABLE (user_id BIGINT, amount BIGINT, status TEXT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_request withdrawal_requests;
BEGIN
    SELECT * INTO v_request FROM withdrawal_requests WHERE id = p_withdrawal;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'UNKNOWN_WITHDRAWAL';
    END IF;
    PERFORM pg_advisory_xact_lock(v_request.user_id);
    UPDATE withdrawal_requests
        SET status = CASE WHEN p_approve THEN 'approved' ELSE 'rejected' END,
            decided_at = p_now, decided_by = p_admin,
            reject_reason = CASE WHEN p_approve THEN NULL ELSE p_reason END
        WHERE id = p_withdrawal AND status = 'pending'
        RETURNING * INTO v_request;
    IF NOT FOUND THEN
        SELECT * INTO v_request FROM withdrawal_requests WHERE id = p_withdrawal;
        RAISE EXCEPTION 'WITHDRAWAL_NOT_PENDING' USING DETAIL = v_request.status;
    END IF;
    IF NOT p_approve THEN
        INSERT INTO balance_ledger (user_id, amount, kind, reference, created_at)
            VALUES (v_request.user_id, v_request.amount, 'withdrawal_release', 'withdrawal:' || p_withdrawal, p_now);
    END IF;
    INSERT INTO admin_audit_log (admin_id, action, target_user_id, details, correlation_id, created_at)
        VALUES (p_admin, CASE WHEN p_approve THEN 'withdrawal_approve' ELSE 'withdrawal_reject' END,
                v_request.user_id,
                jsonb_build_object('withdrawal_id', p_withdrawal, 'amount', v_request.amount, 'reason', p_reason),
                p_correlation_id, p_now);
    RETURN QUERY SELECT v_request.user_id, v_request.amount, v_request.status;
END $$;

-- Claims the next subscription due for auto-renewal (FOR UPDATE SKIP LOCKED, so workers on
-- several instances take different rows) and renews it from the balance. The claim row is
-- unique per (subscription, period), so a period is charged at most once. Returns no row when
-- nothing is due, and 'busy' when the user's lock is held (the row is retried on a later tick).
CREATE FUNCTION atlas_auto_renew_next(p_now TIMESTAMPTZ, p_horizon_seconds INT)
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
    SELECT s.* INTO v_sub FROM subscriptions s
        WHERE s.auto_renew AND NOT s.is_trial
          AND s.expires_at <= p_now + make_interval(secs => p_horizon_seconds)
          AND NOT EXISTS (SELECT 1 FROM auto_renewals r
                          WHERE r.subscription_id = s.id AND r.period_start = s.expires_at)
        ORDER BY s.expires_at, s.id
        LIMIT 1
        FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF NOT pg_try_advisory_xact_lock(v_sub.user_id) THEN
        RETURN QUERY SELECT 'busy'::TEXT, v_sub.id, v_sub.user_id, 0::BIGINT, v_sub.expires_at;
        RETURN;
    END IF;
    SELECT tp.price INTO v_price FROM tariff_periods tp JOIN tariffs t ON t.id = tp.tariff_id
        WHERE t.id = v_sub.tariff_id AND tp.days = v_sub.period_days AND t.is_active;
    SELECT balance INTO v_balance FROM users WHERE telegram_id = v_sub.user_id;
    v_outcome := CASE WHEN v_price IS NULL THEN 'tariff_unavailable'
                      WHEN v_balance < v_price THEN 'insufficient_funds'
                      ELSE 'renewed' END;
    -- Another worker may have claimed this period after our snapshot was taken: then the claim
    -- is theirs, and this tick moves on.
    INSERT INTO auto_renewals (subscription_id, period_start, outcome, amount, created_at)
        VALUES (v_sub.id, v_sub.expires_at, v_outcome,
                CASE WHEN v_outcome = 'renewed' THEN v_price ELSE 0 END, p_now)
        ON CONFLICT (subscription_id, period_start) DO NOTHING
        RETURNING id INTO v_claim;
    IF v_claim IS NULL THEN
        RETURN QUERY SELECT 'busy'::TEXT, v_sub.id, v_sub.user_id, 0::BIGINT, v_sub.expires_at;
        RETURN;
    END IF;
    IF v_outcome <> 'renewed' THEN
        RETURN QUERY SELECT v_outcome, v_sub.id, v_sub.user_id, 0::BIGINT, v_sub.expires_at;
        RETURN;
    END IF;
    INSERT INTO balance_ledger (user_id, amount, kind, reference, created_at)
        VALUES (v_sub.user_id, -v_price, 'auto_renewal', 'renewal:' || v_claim, p_now);
    UPDATE subscriptions
        SET expires_at = GREATEST(expires_at, p_now) + make_interval(days => period_days),
            last_auto_renewal_at = p_now, updated_at = p_now
        WHERE id = v_sub.id
        RETURNING * INTO v_sub;
    RETURN QUERY SELECT 'renewed'::TEXT, v_sub.id, v_sub.user_id, v_price, v_sub.expires_at;
END $$;

-- Grants the one free trial: only once per user, and only to a user without a subscription.
CREATE FUNCTION atlas_activate_trial(p_user BIGINT, p_tariff_code TEXT, p_days INT, p_now TIMESTAMPTZ)
RETURNS subscriptions LANGUAGE plpgsql AS $$
DECLARE
    v_user users;
    v_sub subscriptions;
BEGIN
    v_user := atlas_lock_user(p_user);
    IF v_user.trial_used THEN
        RAISE EXCEPTION 'TRIAL_ALREADY_USED';
    END IF;
    IF EXISTS (SELECT 1 FROM subscriptions WHERE user_id = p_user) THEN
        RAISE EXCEPTION 'TRIAL_NOT_FOR_SUBSCRIBERS';
    END IF;
    UPDATE users SET trial_used = TRUE WHERE telegram_id = p_user;
    INSERT INTO subscriptions (user_id, tariff_id, period_days, expires_at, is_trial, created_at, updated_at)
        SELECT p_user, t.id, p_days, p_now + make_interval(days => p_days), TRUE, p_now, p_now
        FROM tariffs t WHERE t.code = p_tariff_code
        RETURNING * INTO v_sub;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'UNKNOWN_TARIFF';
    END IF;
    RETURN v_sub;
END $$;

-- Registers a reissue's fencing token as soon as its lock is taken, before the panel is called.
-- Fencing only the final write is not enough: a holder whose lock expired could still install
-- before the newer holder's first write reached the store. Claimed first, the newer token makes
-- every older holder's install fail. A token not newer than the stored one is refused.
CREATE FUNCTION atlas_claim_key_fence(p_subscription BIGINT, p_token BIGINT, p_now TIMESTAMPTZ) RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    v_fence BIGINT;
BEGIN
    UPDATE subscriptions SET key_fence = p_token, updated_at = p_now
        WHERE id = p_subscription AND key_fence < p_token;
    IF NOT FOUND THEN
        SELECT key_fence INTO v_fence FROM subscriptions WHERE id = p_subscription;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'UNKNOWN_SUBSCRIPTION';
        END IF;
        RAISE EXCEPTION 'STALE_FENCING_TOKEN' USING DETAIL = v_fence::TEXT;
    END IF;
END $$;

-- Writes a reissued key under the reissue lock's fencing token. A token older than the stored
-- one belongs to a holder whose lock expired and was taken by a newer reissue: refused, and the
-- caller revokes the key it created at the panel. (The same token again is the same holder: it
-- claimed the token first.) Returns the panel id of the key this one replaces (to revoke there).
CREATE FUNCTION atlas_install_reissued_key(
    p_subscription BIGINT, p_token BIGINT, p_panel_key_id TEXT, p_access_uri TEXT, p_now TIMESTAMPTZ
) RETURNS TABLE (key_id BIGINT, replaced_panel_key_id TEXT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_sub subscriptions;
    v_replaced TEXT;
    v_key BIGINT;
BEGIN
    SELECT * INTO v_sub FROM subscriptions WHERE id = p_subscription FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'UNKNOWN_SUBSCRIPTION';
    END IF;
    IF p_token < v_sub.key_fence THEN
        RAISE EXCEPTION 'STALE_FENCING_TOKEN' USING DETAIL = v_sub.key_fence::TEXT;
    END IF;
    UPDATE subscriptions SET key_fence = p_token, activation_status = 'active', updated_at = p_now
        WHERE id = p_subscription;
    UPDATE vpn_keys SET status = 'revoked', revoked_at = p_now
        WHERE subscription_id = p_subscription AND status = 'active'
        RETURNING panel_key_id INTO v_replaced;
    INSERT INTO vpn_keys (subscription_id, panel_key_id, access_uri, fencing_token, status, created_at)
        VALUES (p_subscription, p_panel_key_id, p_access_uri, p_token, 'active', p_now)
        RETURNING id INTO v_key;
    RETURN QUERY SELECT v_key, v_replaced;
END $$;

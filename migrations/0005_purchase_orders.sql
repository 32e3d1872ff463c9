-- One order, one way to pay. An order is what one purchase step of the bot offers (a tariff
-- period, and the buttons to pay for it from the balance or through a provider). Its purchases
-- are keyed by method, so a step pressed twice buys once; but an instance that dies or freezes
-- after its purchase landed leaves the step as it was, and the user, told nothing, may then pay
-- the same order another way. Claiming the order for the first kind of payment closes that: an
-- order paid from the balance is never also paid through a provider, nor the other way round.
-- (Two providers may share an order: a crypto invoice the user never saw is never paid, and it
-- expires.)
CREATE TABLE purchase_orders (
    key           TEXT PRIMARY KEY CHECK (length(key) BETWEEN 8 AND 128),
    user_id       BIGINT NOT NULL REFERENCES users (telegram_id),
    from_balance  BOOLEAN NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);

-- Claims `p_key` for this kind of payment, under the buyer's lock; refuses an order of another
-- user or claimed by the other kind. A NULL key (an old caller) claims nothing.
CREATE FUNCTION atlas_claim_order(p_key TEXT, p_user BIGINT, p_from_balance BOOLEAN, p_now TIMESTAMPTZ)
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    v_order purchase_orders;
BEGIN
    IF p_key IS NULL THEN
        RETURN;
    END IF;
    SELECT * INTO v_order FROM purchase_orders WHERE key = p_key;
    IF NOT FOUND THEN
        INSERT INTO purchase_orders (key, user_id, from_balance, created_at)
            VALUES (p_key, p_user, p_from_balance, p_now);
    ELSIF v_order.user_id <> p_user THEN
        RAISE EXCEPTION 'IDEMPOTENCY_KEY_REUSED';
    ELSIF v_order.from_balance <> p_from_balance THEN
        RAISE EXCEPTION 'ORDER_PAID_ANOTHER_WAY';
    END IF;
END $$;

-- The two purchase functions take the order's key; a replayed idempotency key still returns
-- its first purchase before the order is looked at.
DROP FUNCTION atlas_purchase_from_balance(BIGINT, TEXT, INT, TEXT, TEXT, TIMESTAMPTZ);
CREATE FUNCTION atlas_purchase_from_balance(
    p_user BIGINT, p_tariff_code TEXT, p_days INT, p_promo_code TEXT, p_idempotency_key TEXT,
    p_order_key TEXT, p_now TIMESTAMPTZ
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
    PERFORM atlas_claim_order(p_order_key, p_user, TRUE, p_now);
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

DROP FUNCTION atlas_create_pending_purchase(BIGINT, TEXT, INT, TEXT, TEXT, TEXT, INT, TIMESTAMPTZ);
CREATE FUNCTION atlas_create_pending_purchase(
    p_user BIGINT, p_tariff_code TEXT, p_days INT, p_promo_code TEXT, p_method TEXT,
    p_idempotency_key TEXT, p_order_key TEXT, p_ttl_seconds INT, p_now TIMESTAMPTZ
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
    PERFORM atlas_claim_order(p_order_key, p_user, FALSE, p_now);
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

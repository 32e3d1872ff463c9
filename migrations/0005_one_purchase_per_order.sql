-- One order, one purchase, one way to pay. The bot keys every purchase of one order (its
-- payment step, and a promo code entered there) with one key, whatever the way to pay: a press
-- replayed answers with its purchase; a press of another way to pay, or with another code, is
-- refused ('PAID_ANOTHER_WAY'), where it used to open a second purchase under its own key. A
-- press whose purchase landed while its step stayed put leaves the step's buttons live, and the
-- user, told nothing, may pick another way: now the order is not paid twice. The two purchase
-- functions keep their signatures. In a rolling deploy the last release's balance key is the new
-- order key: its instances meet this refusal after a new instance opened the order for a
-- provider, and (not knowing the code) report it as an unconfirmed purchase until the new
-- instances serve the step; the last release's provider keys still open a second purchase.

-- The purchase a key names, if it is this user's, paid this way (`p_method`: 'balance',
-- 'crypto', 'stars') and with this code. Another user's key is refused as before; this user's
-- key of another way to pay or another code is 'PAID_ANOTHER_WAY'.
CREATE FUNCTION atlas_keyed_purchase(p_key TEXT, p_user BIGINT, p_method TEXT, p_promo_code TEXT)
RETURNS pending_purchases LANGUAGE plpgsql AS $$
DECLARE
    v_purchase pending_purchases;
BEGIN
    IF p_key IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT p.* INTO v_purchase FROM payment_idempotency_keys k
        JOIN pending_purchases p ON p.id = k.purchase_id WHERE k.key = p_key;
    IF FOUND AND v_purchase.user_id <> p_user THEN
        RAISE EXCEPTION 'IDEMPOTENCY_KEY_REUSED';
    END IF;
    IF FOUND AND (v_purchase.method <> p_method OR v_purchase.promo_id IS DISTINCT FROM
                  (SELECT id FROM promo_codes WHERE code = p_promo_code)) THEN
        RAISE EXCEPTION 'PAID_ANOTHER_WAY';
    END IF;
    RETURN v_purchase;
END $$;

CREATE OR REPLACE FUNCTION atlas_purchase_from_balance(
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
    v_purchase := atlas_keyed_purchase(p_idempotency_key, p_user, 'balance', p_promo_code);
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

CREATE OR REPLACE FUNCTION atlas_create_pending_purchase(
    p_user BIGINT, p_tariff_code TEXT, p_days INT, p_promo_code TEXT, p_method TEXT,
    p_idempotency_key TEXT, p_ttl_seconds INT, p_now TIMESTAMPTZ
) RETURNS TABLE (outcome TEXT, purchase_id BIGINT, amount BIGINT, expires_at TIMESTAMPTZ)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_purchase pending_purchases;
BEGIN
    PERFORM atlas_lock_user(p_user);
    v_purchase := atlas_keyed_purchase(p_idempotency_key, p_user, p_method, p_promo_code);
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

-- No caller is left.
DROP FUNCTION atlas_idempotent_purchase(TEXT, BIGINT, BOOLEAN);

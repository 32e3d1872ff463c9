-- What the bot's conversations need beyond the money operations of 0002: usernames for an
-- admin's search, idempotency keys on every money operation a user or admin triggers (so an
-- update handled twice moves money once), top-ups paid by a provider, invoices attached to what
-- they pay for, admin broadcasts as jobs, and an audit row for every admin action.

-- Usernames, for an admin's "find a user", as last seen. Telegram usernames are letters, digits
-- and '_', unique case-insensitively at any moment, but they change hands: the user who shows
-- up with a name takes it from whoever had it before, so a search never finds a former holder.
ALTER TABLE users ADD COLUMN username TEXT CHECK (username ~ '^[A-Za-z0-9_]{1,32}$');
-- When the user blocked the bot (Telegram answered 403, or told us): nobody writes to them
-- until they come back (unblock, or /start).
ALTER TABLE users ADD COLUMN blocked_at TIMESTAMPTZ;
CREATE UNIQUE INDEX users_username_idx ON users (lower(username)) WHERE username IS NOT NULL;

-- The key of the update that confirmed a withdrawal, and of the one that decided it: a
-- redelivered confirmation finds its request, a redelivered decision its decision.
ALTER TABLE withdrawal_requests
    ADD COLUMN idempotency_key TEXT UNIQUE CHECK (length(idempotency_key) BETWEEN 8 AND 128),
    ADD COLUMN decision_key TEXT UNIQUE CHECK (length(decision_key) BETWEEN 8 AND 128);

-- The key of the update behind an admin's action (credit, debit, ...): a replay finds the row.
ALTER TABLE admin_audit_log
    ADD COLUMN idempotency_key TEXT UNIQUE CHECK (length(idempotency_key) BETWEEN 8 AND 128);

-- Top-ups of the balance paid by a provider: opened when the invoice is made, credited once
-- per provider payment (the payments table's unique id), closed by cancel or expiry.
CREATE TABLE topups (
    id               BIGSERIAL PRIMARY KEY,
    user_id          BIGINT NOT NULL REFERENCES users (telegram_id),
    amount           BIGINT NOT NULL CHECK (amount > 0),
    method           TEXT NOT NULL CHECK (method IN ('crypto', 'stars')),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'cancelled', 'expired')),
    idempotency_key  TEXT UNIQUE CHECK (length(idempotency_key) BETWEEN 8 AND 128),
    -- The provider's invoice (Crypto Pay's invoice_id) and where it is paid, once made.
    invoice_id       TEXT UNIQUE CHECK (length(invoice_id) BETWEEN 1 AND 128),
    invoice_url      TEXT CHECK (length(invoice_url) BETWEEN 1 AND 2048),
    CHECK ((invoice_id IS NULL) = (invoice_url IS NULL)),
    created_at       TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL,
    paid_at          TIMESTAMPTZ,
    CHECK ((status = 'paid') = (paid_at IS NOT NULL))
);
CREATE INDEX topups_open_idx ON topups (expires_at) WHERE status = 'pending';

ALTER TABLE pending_purchases
    ADD COLUMN invoice_id TEXT UNIQUE CHECK (length(invoice_id) BETWEEN 1 AND 128),
    ADD COLUMN invoice_url TEXT CHECK (length(invoice_url) BETWEEN 1 AND 2048),
    ADD CHECK ((invoice_id IS NULL) = (invoice_url IS NULL));

-- A payment for a top-up names it (the ledger's 'topup' entry references the payment as before).
-- A top-up may be paid more than once (a Stars invoice forwarded and paid twice): every payment
-- is money received and is credited, once per provider payment id.
ALTER TABLE payments ADD COLUMN topup_id BIGINT REFERENCES topups (id);

-- Admin broadcasts, as jobs the workers send: resumable after a crash from `last_user_id`.
CREATE TABLE broadcasts (
    id               BIGSERIAL PRIMARY KEY,
    admin_id         BIGINT NOT NULL,
    text             TEXT NOT NULL CHECK (length(text) BETWEEN 1 AND 4096),
    idempotency_key  TEXT UNIQUE CHECK (length(idempotency_key) BETWEEN 8 AND 128),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'done')),
    last_user_id     BIGINT NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL,
    finished_at      TIMESTAMPTZ
);

-- Creates a withdrawal request and holds its amount out of the balance at once. A replayed key
-- returns the request it made ('duplicate'); the same key for another user or amount is refused.
DROP FUNCTION atlas_create_withdrawal(BIGINT, BIGINT, TEXT, BIGINT, TIMESTAMPTZ);
CREATE FUNCTION atlas_create_withdrawal(
    p_user BIGINT, p_amount BIGINT, p_requisites TEXT, p_min_amount BIGINT, p_key TEXT, p_now TIMESTAMPTZ
) RETURNS TABLE (outcome TEXT, withdrawal_id BIGINT, balance BIGINT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_user users;
    v_request withdrawal_requests;
BEGIN
    v_user := atlas_lock_user(p_user);
    IF p_key IS NOT NULL THEN
        SELECT * INTO v_request FROM withdrawal_requests WHERE idempotency_key = p_key;
        IF FOUND THEN
            IF v_request.user_id <> p_user OR v_request.amount <> p_amount THEN
                RAISE EXCEPTION 'IDEMPOTENCY_KEY_REUSED';
            END IF;
            RETURN QUERY SELECT 'duplicate'::TEXT, v_request.id, v_user.balance;
            RETURN;
        END IF;
    END IF;
    IF p_amount < p_min_amount THEN
        RAISE EXCEPTION 'WITHDRAWAL_BELOW_MINIMUM';
    END IF;
    IF v_user.balance < p_amount THEN
        RAISE EXCEPTION 'INSUFFICIENT_BALANCE';
    END IF;
    INSERT INTO withdrawal_requests (user_id, amount, requisites, status, idempotency_key, created_at)
        VALUES (p_user, p_amount, p_requisites, 'pending', p_key, p_now)
        RETURNING * INTO v_request;
    INSERT INTO balance_ledger (user_id, amount, kind, reference, created_at)
        VALUES (p_user, -p_amount, 'withdrawal_hold', 'withdrawal:' || v_request.id, p_now);
    RETURN QUERY SELECT 'created'::TEXT, v_request.id, v_user.balance - p_amount;
END $$;

-- Approves or rejects a withdrawal, only from pending; rejecting returns the held amount. The
-- decision replayed with its own key returns it again ('duplicate'); any other attempt on a
-- decided request is refused with its status.
DROP FUNCTION atlas_decide_withdrawal(BIGINT, BIGINT, BOOLEAN, TEXT, TEXT, TIMESTAMPTZ);
CREATE FUNCTION atlas_decide_withdrawal(
    p_withdrawal BIGINT, p_admin BIGINT, p_approve BOOLEAN, p_reason TEXT, p_correlation_id TEXT,
    p_key TEXT, p_now TIMESTAMPTZ
) RETURNS TABLE (outcome TEXT, user_id BIGINT, amount BIGINT, status TEXT)
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
            decided_at = p_now, decided_by = p_admin, decision_key = p_key,
            reject_reason = CASE WHEN p_approve THEN NULL ELSE p_reason END
        WHERE id = p_withdrawal AND status = 'pending'
        RETURNING * INTO v_request;
    IF NOT FOUND THEN
        SELECT * INTO v_request FROM withdrawal_requests WHERE id = p_withdrawal;
        IF p_key IS NOT NULL AND v_request.decision_key = p_key THEN
            RETURN QUERY SELECT 'duplicate'::TEXT, v_request.user_id, v_request.amount, v_request.status;
            RETURN;
        END IF;
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
    RETURN QUERY SELECT 'decided'::TEXT, v_request.user_id, v_request.amount, v_request.status;
END $$;

-- An admin's credit (p_amount > 0) or debit (p_amount < 0), with its audit log entry. A replayed
-- key returns the first adjustment ('duplicate') and the balance now.
DROP FUNCTION atlas_admin_adjust(BIGINT, BIGINT, BIGINT, TEXT, TEXT, TIMESTAMPTZ);
CREATE FUNCTION atlas_admin_adjust(
    p_admin BIGINT, p_user BIGINT, p_amount BIGINT, p_reason TEXT, p_correlation_id TEXT, p_key TEXT,
    p_now TIMESTAMPTZ
) RETURNS TABLE (outcome TEXT, audit_id BIGINT, balance BIGINT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_balance BIGINT;
    v_audit admin_audit_log;
BEGIN
    PERFORM pg_advisory_xact_lock(p_user);
    SELECT balance INTO v_balance FROM users WHERE telegram_id = p_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'UNKNOWN_USER';
    END IF;
    IF p_key IS NOT NULL THEN
        SELECT * INTO v_audit FROM admin_audit_log WHERE idempotency_key = p_key;
        IF FOUND THEN
            IF v_audit.target_user_id IS DISTINCT FROM p_user
               OR (v_audit.details ->> 'amount')::BIGINT IS DISTINCT FROM p_amount THEN
                RAISE EXCEPTION 'IDEMPOTENCY_KEY_REUSED';
            END IF;
            RETURN QUERY SELECT 'duplicate'::TEXT, v_audit.id, v_balance;
            RETURN;
        END IF;
    END IF;
    IF p_amount < 0 AND v_balance < -p_amount THEN
        RAISE EXCEPTION 'INSUFFICIENT_BALANCE';
    END IF;
    INSERT INTO admin_audit_log (admin_id, action, target_user_id, details, correlation_id, idempotency_key, created_at)
        VALUES (p_admin, CASE WHEN p_amount > 0 THEN 'admin_credit' ELSE 'admin_debit' END, p_user,
                jsonb_build_object('amount', p_amount, 'reason', p_reason), p_correlation_id, p_key, p_now)
        RETURNING * INTO v_audit;
    INSERT INTO balance_ledger (user_id, amount, kind, reference, created_at)
        VALUES (p_user, p_amount, CASE WHEN p_amount > 0 THEN 'admin_credit' ELSE 'admin_debit' END,
                'audit:' || v_audit.id, p_now);
    RETURN QUERY SELECT 'adjusted'::TEXT, v_audit.id, v_balance + p_amount;
END $$;

-- Opens a top-up to be paid by a provider. A replayed key returns the first ('duplicate').
CREATE FUNCTION atlas_create_topup(
    p_user BIGINT, p_amount BIGINT, p_method TEXT, p_key TEXT, p_ttl_seconds INT, p_now TIMESTAMPTZ
) RETURNS TABLE (outcome TEXT, topup_id BIGINT, expires_at TIMESTAMPTZ)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_topup topups;
BEGIN
    PERFORM atlas_lock_user(p_user);
    IF p_key IS NOT NULL THEN
        SELECT * INTO v_topup FROM topups WHERE idempotency_key = p_key;
        IF FOUND THEN
            IF v_topup.user_id <> p_user OR v_topup.amount <> p_amount OR v_topup.method <> p_method THEN
                RAISE EXCEPTION 'IDEMPOTENCY_KEY_REUSED';
            END IF;
            RETURN QUERY SELECT 'duplicate'::TEXT, v_topup.id, v_topup.expires_at;
            RETURN;
        END IF;
    END IF;
    INSERT INTO topups (user_id, amount, method, status, idempotency_key, created_at, expires_at)
        VALUES (p_user, p_amount, p_method, 'pending', p_key, p_now, p_now + make_interval(secs => p_ttl_seconds))
        RETURNING * INTO v_topup;
    RETURN QUERY SELECT 'created'::TEXT, v_topup.id, v_topup.expires_at;
END $$;

-- Credits a provider's payment for a top-up, once per provider payment id. Money received is
-- credited even when the top-up was cancelled or expired meanwhile (it is never lost); a
-- pending top-up becomes paid.
CREATE FUNCTION atlas_finalize_topup(
    p_topup BIGINT, p_provider TEXT, p_provider_payment_id TEXT, p_amount BIGINT, p_now TIMESTAMPTZ
) RETURNS TABLE (outcome TEXT, user_id BIGINT, balance BIGINT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_topup topups;
    v_balance BIGINT;
    v_payment payments;
BEGIN
    SELECT * INTO v_topup FROM topups WHERE id = p_topup;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'UNKNOWN_TOPUP';
    END IF;
    PERFORM pg_advisory_xact_lock(v_topup.user_id);
    SELECT balance INTO v_balance FROM users WHERE telegram_id = v_topup.user_id;
    SELECT * INTO v_payment FROM payments
        WHERE provider = p_provider AND provider_payment_id = p_provider_payment_id;
    IF FOUND THEN
        IF v_payment.topup_id IS DISTINCT FROM p_topup OR v_payment.amount <> p_amount THEN
            RAISE EXCEPTION 'PAYMENT_ID_REUSED';
        END IF;
        RETURN QUERY SELECT 'duplicate'::TEXT, v_topup.user_id, v_balance;
        RETURN;
    END IF;
    IF v_topup.method <> p_provider THEN
        RAISE EXCEPTION 'PAYMENT_METHOD_MISMATCH';
    END IF;
    IF v_topup.amount <> p_amount THEN
        RAISE EXCEPTION 'PAYMENT_AMOUNT_MISMATCH';
    END IF;
    INSERT INTO payments (provider, provider_payment_id, user_id, amount, purpose, topup_id, created_at)
        VALUES (p_provider, p_provider_payment_id, v_topup.user_id, p_amount, 'topup', p_topup, p_now)
        RETURNING * INTO v_payment;
    INSERT INTO balance_ledger (user_id, amount, kind, reference, created_at)
        VALUES (v_topup.user_id, p_amount, 'topup', 'payment:' || v_payment.id, p_now);
    UPDATE topups SET status = 'paid', paid_at = p_now WHERE id = p_topup AND status = 'pending';
    RETURN QUERY SELECT 'credited'::TEXT, v_topup.user_id, v_balance + p_amount;
END $$;

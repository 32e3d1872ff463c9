-- A reissue is keyed by the request that asked for it (the Telegram update, or the conversation
-- step it answered). A request delivered again after its reissue installed the new key (its
-- instance lost its replies, or was cut off before it could release the reissue lock) finds the
-- key it made and reports it, instead of making another or finding its own lock still held.
--
-- Rolling deploy: instances of the last release call the five-argument form, which still
-- resolves (the request defaults to NULL: a key they install answers no request).

ALTER TABLE vpn_keys ADD COLUMN request TEXT CHECK (length(request) BETWEEN 1 AND 200);

DROP FUNCTION atlas_install_reissued_key(BIGINT, BIGINT, TEXT, TEXT, TIMESTAMPTZ);

-- Writes a reissued key under the reissue lock's fencing token. A token older than the stored
-- one belongs to a holder whose lock expired and was taken by a newer reissue: refused, and the
-- caller revokes the key it created at the panel. (The same token again is the same holder: it
-- claimed the token first.) Returns the panel id of the key this one replaces (to revoke there).
-- `p_request` names the request the key answers (see above).
CREATE FUNCTION atlas_install_reissued_key(
    p_subscription BIGINT, p_token BIGINT, p_panel_key_id TEXT, p_access_uri TEXT, p_now TIMESTAMPTZ,
    p_request TEXT DEFAULT NULL
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
    INSERT INTO vpn_keys (subscription_id, panel_key_id, access_uri, fencing_token, status, created_at, request)
        VALUES (p_subscription, p_panel_key_id, p_access_uri, p_token, 'active', p_now, p_request)
        RETURNING id INTO v_key;
    RETURN QUERY SELECT v_key, v_replaced;
END $$;

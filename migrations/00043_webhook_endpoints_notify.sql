-- handle-webhook's replicas cache which endpoints are enabled and what they
-- subscribe to, to decide without a read which events can concern them
-- (issue 20). Every change of that commits a NOTIFY on
-- webhook_endpoints_changed with it: each replica's listener drops its
-- copy and reloads. A trigger, so no write is missed, whatever makes it
-- (the admin routes, the sender disabling an endpoint, a hand-made fix).
-- A lease taken, a secret rotated or a description changed notifies nothing.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION webhook_endpoints_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('webhook_endpoints_changed', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER webhook_endpoints_added_or_removed AFTER INSERT OR DELETE OR TRUNCATE ON webhook_endpoints
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_endpoints_notify();
CREATE TRIGGER webhook_endpoints_changed AFTER UPDATE ON webhook_endpoints
    FOR EACH ROW WHEN (OLD.events IS DISTINCT FROM NEW.events OR OLD.disabled IS DISTINCT FROM NEW.disabled)
    EXECUTE FUNCTION webhook_endpoints_notify();

-- +goose Down
DROP TRIGGER webhook_endpoints_changed ON webhook_endpoints;
DROP TRIGGER webhook_endpoints_added_or_removed ON webhook_endpoints;
DROP FUNCTION webhook_endpoints_notify();

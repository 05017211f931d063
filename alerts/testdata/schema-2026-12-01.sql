-- vigil.db as vigil wrote it on 2026-12-01 (before "receiver" was the one
-- name: a subscriptions table, subscription_id columns): a database from
-- then must open and work.
CREATE TABLE alerts (fingerprint TEXT PRIMARY KEY, body TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE subscriptions (id TEXT PRIMARY KEY, body TEXT NOT NULL, secret TEXT NOT NULL, old_secret TEXT NOT NULL DEFAULT '', old_secret_until INTEGER NOT NULL DEFAULT 0, challenge TEXT NOT NULL DEFAULT '');
CREATE TABLE deliveries (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, subscription_id TEXT NOT NULL, event_type TEXT NOT NULL, payload BLOB NOT NULL, state TEXT NOT NULL, next_attempt_at INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, last_error TEXT NOT NULL DEFAULT '', payload_id INTEGER NOT NULL DEFAULT 0, fingerprint TEXT NOT NULL DEFAULT '');
CREATE TABLE payloads (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE events (seq INTEGER PRIMARY KEY, type TEXT NOT NULL, standard_payload INTEGER NOT NULL, alertmanager_payload INTEGER NOT NULL, created_at INTEGER NOT NULL, fingerprint TEXT NOT NULL DEFAULT '');
CREATE TABLE cursors (subscription_id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE INDEX deliveries_sub ON deliveries (subscription_id, seq);
CREATE INDEX deliveries_sub_due ON deliveries (subscription_id, state, next_attempt_at);
CREATE INDEX deliveries_queued ON deliveries (next_attempt_at) WHERE state = 'queued';
CREATE TABLE attempts (delivery_id TEXT NOT NULL, at INTEGER NOT NULL, status INTEGER NOT NULL, error TEXT NOT NULL, duration_ms INTEGER NOT NULL);
CREATE INDEX attempts_delivery ON attempts (delivery_id);
CREATE INDEX deliveries_alert_open ON deliveries (subscription_id, fingerprint, seq) WHERE state IN ('queued', 'in_flight');

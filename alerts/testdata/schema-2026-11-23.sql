-- vigil.db as vigil wrote it on 2026-11-23 (before webhooks kept their alert's
-- fingerprint): a database from then must open and work.
CREATE TABLE IF NOT EXISTS alerts (fingerprint TEXT PRIMARY KEY, body TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS subscriptions (id TEXT PRIMARY KEY, body TEXT NOT NULL, secret TEXT NOT NULL, old_secret TEXT NOT NULL DEFAULT '', old_secret_until INTEGER NOT NULL DEFAULT 0, challenge TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS deliveries (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, subscription_id TEXT NOT NULL, event_type TEXT NOT NULL, payload BLOB NOT NULL, state TEXT NOT NULL, next_attempt_at INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, last_error TEXT NOT NULL DEFAULT '', payload_id INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS payloads (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, type TEXT NOT NULL, standard_payload INTEGER NOT NULL, alertmanager_payload INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (subscription_id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
DROP INDEX IF EXISTS deliveries_due;
CREATE INDEX IF NOT EXISTS deliveries_sub ON deliveries (subscription_id, seq);
CREATE INDEX IF NOT EXISTS deliveries_sub_due ON deliveries (subscription_id, state, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_queued ON deliveries (next_attempt_at) WHERE state = 'queued';
CREATE TABLE IF NOT EXISTS attempts (delivery_id TEXT NOT NULL, at INTEGER NOT NULL, status INTEGER NOT NULL, error TEXT NOT NULL, duration_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id);

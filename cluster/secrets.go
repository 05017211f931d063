package cluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"vigil/alerts"
)

// SecretsBucket keeps what every replica must share and no one else may
// read: the VAPID key pair web pushes are signed with (a browser
// subscribes with the public key of whichever replica served its page,
// and takes pushes from any replica), and the secret sign-in sessions are
// signed with (a session made on one replica holds on the others).
const SecretsBucket = "VIGIL_SECRETS"

// The secrets' keys in SecretsBucket.
const (
	vapidKey   = "vapid"
	sessionKey = "session"
)

// SharedSecret reads a secret the replicas share from NATS, made by the
// first replica that asks (with make), and hands it to use, which may
// refuse it; it tries until it has one or ctx is done.
func SharedSecret(ctx context.Context, js jetstream.JetStream, replicas int, name string, make func() ([]byte, error), use func([]byte) error, log *slog.Logger) {
	b := newBucket(js, jetstream.KeyValueConfig{Bucket: SecretsBucket, Description: "vigil's secrets: web push keys, the session key", Replicas: replicas})
	retry(ctx, func() (bool, error) {
		v, err := sharedSecret(ctx, b, name, make)
		if err == nil {
			err = use(v)
		}
		return false, err
	}, func(err error, wait time.Duration) {
		log.Warn("reading a secret the replicas share from NATS", "secret", name, "err", err, "retry_in", wait)
	})
}

func sharedSecret(ctx context.Context, b *bucket, name string, make func() ([]byte, error)) ([]byte, error) {
	kv, err := b.open(ctx)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		v, err := make()
		if err != nil {
			return nil, err
		}
		if _, err := kv.Create(ctx, name, v); err == nil {
			return v, nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, err
		}
		e, err = kv.Get(ctx, name) // another replica made it first
		if err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	return e.Value(), nil
}

// SharedVAPID reads the replicas' VAPID key pair into keys.
func SharedVAPID(ctx context.Context, js jetstream.JetStream, replicas int, subject string, keys *alerts.PushKeys, log *slog.Logger) {
	SharedSecret(ctx, js, replicas, vapidKey, func() ([]byte, error) {
		v, err := alerts.NewVAPID()
		if err != nil {
			return nil, err
		}
		return json.Marshal(v)
	}, func(b []byte) error {
		var v alerts.VAPID
		if err := json.Unmarshal(b, &v); err != nil || v.Public == "" || v.Private == "" {
			return fmt.Errorf("the web push keys in %s are not vigil's", SecretsBucket)
		}
		v.Subject = subject
		keys.Set(v)
		return nil
	}, log)
}

// SharedSessionSecret reads the replicas' session secret, and hands it to
// use.
func SharedSessionSecret(ctx context.Context, js jetstream.JetStream, replicas int, use func([]byte), log *slog.Logger) {
	SharedSecret(ctx, js, replicas, sessionKey, func() ([]byte, error) {
		b := make([]byte, 32)
		_, err := rand.Read(b)
		return b, err
	}, func(b []byte) error {
		if len(b) < 32 {
			return fmt.Errorf("the session secret in %s is too short", SecretsBucket)
		}
		use(b)
		return nil
	}, log)
}

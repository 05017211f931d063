package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"vigil/alerts"
)

// VAPIDBucket keeps the VAPID key pair every replica signs web pushes
// with: a browser subscribes with the public key of whichever replica
// served its page, and takes pushes from any replica.
const VAPIDBucket = "VIGIL_WEBPUSH"

const vapidKey = "vapid"

// SharedVAPID reads the replicas' key pair from NATS, made by the first
// replica that asks, into keys; it tries until it has them or ctx is
// done.
func SharedVAPID(ctx context.Context, js jetstream.JetStream, replicas int, subject string, keys *alerts.PushKeys, log *slog.Logger) {
	b := newBucket(js, jetstream.KeyValueConfig{Bucket: VAPIDBucket, Description: "vigil's VAPID keys, for web push", Replicas: replicas})
	retry(ctx, func() (bool, error) {
		v, err := sharedVAPID(ctx, b)
		if err != nil {
			return false, err
		}
		v.Subject = subject
		keys.Set(v)
		return false, nil
	}, func(err error, wait time.Duration) {
		log.Warn("reading the web push keys from NATS", "err", err, "retry_in", wait)
	})
}

func sharedVAPID(ctx context.Context, b *bucket) (alerts.VAPID, error) {
	kv, err := b.open(ctx)
	if err != nil {
		return alerts.VAPID{}, err
	}
	e, err := kv.Get(ctx, vapidKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		v, err := alerts.NewVAPID()
		if err != nil {
			return alerts.VAPID{}, err
		}
		raw, _ := json.Marshal(v)
		if _, err := kv.Create(ctx, vapidKey, raw); err == nil {
			return v, nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return alerts.VAPID{}, err
		}
		e, err = kv.Get(ctx, vapidKey) // another replica made them first
		if err != nil {
			return alerts.VAPID{}, err
		}
	} else if err != nil {
		return alerts.VAPID{}, err
	}
	var v alerts.VAPID
	if err := json.Unmarshal(e.Value(), &v); err != nil || v.Public == "" || v.Private == "" {
		return alerts.VAPID{}, fmt.Errorf("the web push keys in %s are not vigil's", VAPIDBucket)
	}
	return v, nil
}

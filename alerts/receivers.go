package alerts

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"
)

// Receiver statuses.
const (
	ReceiverActive   = "active"
	ReceiverPending  = "pending_verification" // subscribed through the API; has not echoed the challenge yet
	ReceiverDisabled = "disabled"             // it answered 410 Gone, or was turned off
)

// A Receiver is where webhooks go: one written in the config file, or one
// that subscribed itself through the API (Receivers.Create) and proved it
// wants them by echoing a challenge.
type Receiver struct {
	ID          string    `json:"id"`
	URL         string    `json:"url"`
	Events      []string  `json:"events"`
	Format      string    `json:"format"`
	Description string    `json:"description,omitempty"`
	Status      string    `json:"status"`
	Origin      string    `json:"origin"` // "config" or "api"
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`

	Secret         string    `json:"-"`
	OldSecret      string    `json:"-"`
	OldSecretUntil time.Time `json:"-"`
	challenge      string
}

// Wants reports whether the receiver takes an event type; patterns may
// use wildcards ("alert.*", "*").
func (r Receiver) Wants(typ string) bool {
	for _, p := range r.Events {
		if ok, _ := path.Match(p, typ); ok || p == "*" {
			return true
		}
	}
	return false
}

// secrets are the secrets to sign with now: the current one, and the old
// one for a day after a rotation.
func (r Receiver) secrets(now time.Time) []string {
	out := []string{r.Secret}
	if r.OldSecret != "" && now.Before(r.OldSecretUntil) {
		out = append(out, r.OldSecret)
	}
	return out
}

// SecretOverlap is how long a rotated-out secret still signs deliveries.
const SecretOverlap = 24 * time.Hour

// ErrInvalid wraps errors in a receiver request that the client must fix.
var ErrInvalid = errors.New("invalid")

// ReceiverInput is what a client sends to create or change a receiver.
// Unset fields keep their value on update.
type ReceiverInput struct {
	URL         *string   `json:"url"`
	Events      *[]string `json:"events"`
	Format      *string   `json:"format"`
	Description *string   `json:"description"`
	Status      *string   `json:"status"` // "active" or "disabled" (an unverified one stays pending)
}

// Receivers is the service behind the receivers API: receivers that
// subscribe themselves, their verification, secrets, test events and
// delivery history. It is safe for concurrent use.
type Receivers struct {
	DB     *DB
	Wake   func() // wakes the dispatcher; may be nil
	Now    func() time.Time
	MaxLen int // of a description; 0 is 1,000
}

func (rs *Receivers) now() time.Time {
	if rs.Now == nil {
		return time.Now()
	}
	return rs.Now()
}

func (rs *Receivers) wake() {
	if rs.Wake != nil {
		rs.Wake()
	}
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

func (rs *Receivers) apply(r *Receiver, in ReceiverInput, creating bool) error {
	if in.URL != nil {
		u, err := url.Parse(*in.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || len(*in.URL) > 2048 {
			return invalid("url: want an absolute http:// or https:// URL without credentials")
		}
		r.URL = u.String() // normalised: "HTTPS://Example.com" is stored as https://Example.com
	} else if creating {
		return invalid("url: required")
	}
	if in.Events != nil {
		if len(*in.Events) == 0 || len(*in.Events) > 32 {
			return invalid("events: want 1 to 32 event types, such as alert.*")
		}
		for _, e := range *in.Events {
			if err := CheckEventPattern(e); err != nil {
				return invalid("events: %v", err)
			}
		}
		r.Events = *in.Events
	} else if creating {
		r.Events = []string{"alert.*"}
	}
	if in.Format != nil {
		if *in.Format != FormatStandard && *in.Format != FormatAlertmanager {
			return invalid("format: %q is not standard or alertmanager", *in.Format)
		}
		r.Format = *in.Format
	} else if creating {
		r.Format = FormatStandard
	}
	if in.Description != nil {
		max := rs.MaxLen
		if max == 0 {
			max = 1000
		}
		if len(*in.Description) > max {
			return invalid("description: longer than %d bytes", max)
		}
		r.Description = *in.Description
	}
	if in.Status != nil {
		switch *in.Status {
		case ReceiverDisabled:
			r.Status = ReceiverDisabled
		case ReceiverActive:
			if r.Status == ReceiverPending {
				return invalid("status: the receiver has not answered the verification challenge yet")
			}
			r.Status = ReceiverActive
		default:
			return invalid("status: %q is not active or disabled", *in.Status)
		}
	}
	return nil
}

// Create saves a receiver as pending verification and queues the signed
// verification event. The secret is returned only here.
func (rs *Receivers) Create(ctx context.Context, in ReceiverInput) (Receiver, error) {
	now := rs.now()
	r := Receiver{ID: newID("rcv_"), Origin: "api", Status: ReceiverPending, Secret: NewSecret(), CreatedAt: now, UpdatedAt: now}
	if err := rs.apply(&r, in, true); err != nil {
		return Receiver{}, err
	}
	if in.Status != nil && *in.Status == ReceiverDisabled {
		r.Status = ReceiverDisabled
	}
	r.challenge = strings.TrimPrefix(NewSecret(), "whsec_")
	if err := rs.DB.PutReceiver(ctx, r); err != nil {
		return Receiver{}, err
	}
	if err := rs.DB.setChallenge(ctx, r.ID, r.challenge); err != nil {
		return Receiver{}, err
	}
	if _, err := rs.DB.Enqueue(ctx, r, EventVerify, now, func(seq uint64) ([]byte, error) {
		return verifyPayload(r.ID, r.challenge, now, seq)
	}); err != nil {
		return Receiver{}, err
	}
	rs.wake()
	return r, nil
}

// Update changes a receiver.
func (rs *Receivers) Update(ctx context.Context, id string, in ReceiverInput) (Receiver, error) {
	r, err := rs.DB.Receiver(ctx, id)
	if err != nil {
		return Receiver{}, err
	}
	if err := rs.apply(&r, in, false); err != nil {
		return Receiver{}, err
	}
	r.UpdatedAt = rs.now()
	return r, rs.DB.PutReceiver(ctx, r)
}

// Rotate gives a receiver a new secret; the old one keeps signing, beside
// the new, for SecretOverlap.
func (rs *Receivers) Rotate(ctx context.Context, id string) (Receiver, error) {
	r, err := rs.DB.Receiver(ctx, id)
	if err != nil {
		return Receiver{}, err
	}
	now := rs.now()
	r.OldSecret, r.OldSecretUntil, r.Secret, r.UpdatedAt = r.Secret, now.Add(SecretOverlap), NewSecret(), now
	return r, rs.DB.PutReceiver(ctx, r)
}

// Test queues a signed test event and returns its delivery id.
func (rs *Receivers) Test(ctx context.Context, id string) (string, error) {
	r, err := rs.DB.Receiver(ctx, id)
	if err != nil {
		return "", err
	}
	now := rs.now()
	did, err := rs.DB.Enqueue(ctx, r, EventTest, now, func(seq uint64) ([]byte, error) {
		return testPayload(r.ID, now, seq)
	})
	if err == nil {
		rs.wake()
	}
	return did, err
}

// Delete removes a receiver.
func (rs *Receivers) Delete(ctx context.Context, id string) error {
	return rs.DB.DeleteReceiver(ctx, id)
}

// Retry sends a dead delivery again.
func (rs *Receivers) Retry(ctx context.Context, id string) error {
	err := rs.DB.Retry(ctx, id, rs.now())
	if err == nil {
		rs.wake()
	}
	return err
}

// Get, List, Backlog, Delivery and Deliveries read the outbox.
func (rs *Receivers) Get(ctx context.Context, id string) (Receiver, error) {
	return rs.DB.Receiver(ctx, id)
}

func (rs *Receivers) List(ctx context.Context) ([]Receiver, error) {
	return rs.DB.Receivers(ctx)
}

// Backlog is how many events wait for a receiver, not yet started.
func (rs *Receivers) Backlog(ctx context.Context, id string) (int, error) {
	return rs.DB.Backlog(ctx, id)
}

func (rs *Receivers) Delivery(ctx context.Context, id string) (Delivery, error) {
	return rs.DB.Delivery(ctx, id)
}

func (rs *Receivers) Deliveries(ctx context.Context, receiverID string, limit int) ([]Delivery, error) {
	return rs.DB.Deliveries(ctx, receiverID, limit)
}

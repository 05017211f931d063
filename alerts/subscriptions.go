package alerts

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Webhook event types for subscriptions themselves.
const (
	EventVerify = "subscription.verify" // carries a challenge the receiver echoes
)

// SecretOverlap is how long a rotated-out secret still signs deliveries.
const SecretOverlap = 24 * time.Hour

// ErrInvalid wraps errors in a subscription request that the client must fix.
var ErrInvalid = errors.New("invalid")

// SubscriptionInput is what a client sends to create or change a
// subscription. Unset fields keep their value on update.
type SubscriptionInput struct {
	URL         *string   `json:"url"`
	Events      *[]string `json:"events"`
	Format      *string   `json:"format"`
	Description *string   `json:"description"`
	Status      *string   `json:"status"` // "active" or "disabled" (an unverified one stays pending)
}

// Hooks is the REST-hooks service: subscriptions that receivers manage
// themselves, their verification, test events and delivery history.
type Hooks struct {
	DB     *DB
	Wake   func() // wakes the dispatcher; may be nil
	Now    func() time.Time
	MaxLen int // of a description; 0 is 1,000
}

func (h *Hooks) now() time.Time {
	if h.Now == nil {
		return time.Now()
	}
	return h.Now()
}

func (h *Hooks) wake() {
	if h.Wake != nil {
		h.Wake()
	}
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

func (h *Hooks) apply(s *Subscription, in SubscriptionInput, creating bool) error {
	if in.URL != nil {
		u, err := url.Parse(*in.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || len(*in.URL) > 2048 {
			return invalid("url: want an absolute http:// or https:// URL without credentials")
		}
		s.URL = u.String() // normalised: "HTTPS://Example.com" is stored as https://Example.com
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
		s.Events = *in.Events
	} else if creating {
		s.Events = []string{"alert.*"}
	}
	if in.Format != nil {
		if *in.Format != FormatStandard && *in.Format != FormatAlertmanager {
			return invalid("format: %q is not standard or alertmanager", *in.Format)
		}
		s.Format = *in.Format
	} else if creating {
		s.Format = FormatStandard
	}
	if in.Description != nil {
		max := h.MaxLen
		if max == 0 {
			max = 1000
		}
		if len(*in.Description) > max {
			return invalid("description: longer than %d bytes", max)
		}
		s.Description = *in.Description
	}
	if in.Status != nil {
		switch *in.Status {
		case SubscriptionDisabled:
			s.Status = SubscriptionDisabled
		case SubscriptionActive:
			if s.Status == SubscriptionPending {
				return invalid("status: the receiver has not answered the verification challenge yet")
			}
			s.Status = SubscriptionActive
		default:
			return invalid("status: %q is not active or disabled", *in.Status)
		}
	}
	return nil
}

// Create saves a subscription as pending verification and queues the
// signed verification event. The secret is returned only here.
func (h *Hooks) Create(ctx context.Context, in SubscriptionInput) (Subscription, error) {
	now := h.now()
	s := Subscription{ID: newID("sub_"), Origin: "api", Status: SubscriptionPending, Secret: NewSecret(), CreatedAt: now, UpdatedAt: now}
	if err := h.apply(&s, in, true); err != nil {
		return Subscription{}, err
	}
	if in.Status != nil && *in.Status == SubscriptionDisabled {
		s.Status = SubscriptionDisabled
	}
	s.challenge = strings.TrimPrefix(NewSecret(), "whsec_")
	if err := h.DB.PutSubscription(ctx, s); err != nil {
		return Subscription{}, err
	}
	if err := h.DB.setChallenge(ctx, s.ID, s.challenge); err != nil {
		return Subscription{}, err
	}
	if _, err := h.DB.Enqueue(ctx, s, EventVerify, now, func(seq uint64) ([]byte, error) {
		return verifyPayload(s.ID, s.challenge, now, seq)
	}); err != nil {
		return Subscription{}, err
	}
	h.wake()
	return s, nil
}

// Update changes a subscription.
func (h *Hooks) Update(ctx context.Context, id string, in SubscriptionInput) (Subscription, error) {
	s, err := h.DB.Subscription(ctx, id)
	if err != nil {
		return Subscription{}, err
	}
	if err := h.apply(&s, in, false); err != nil {
		return Subscription{}, err
	}
	s.UpdatedAt = h.now()
	return s, h.DB.PutSubscription(ctx, s)
}

// Rotate gives a subscription a new secret; the old one keeps signing,
// beside the new, for SecretOverlap.
func (h *Hooks) Rotate(ctx context.Context, id string) (Subscription, error) {
	s, err := h.DB.Subscription(ctx, id)
	if err != nil {
		return Subscription{}, err
	}
	now := h.now()
	s.OldSecret, s.OldSecretUntil, s.Secret, s.UpdatedAt = s.Secret, now.Add(SecretOverlap), NewSecret(), now
	return s, h.DB.PutSubscription(ctx, s)
}

// Test queues a signed test event and returns its delivery id.
func (h *Hooks) Test(ctx context.Context, id string) (string, error) {
	s, err := h.DB.Subscription(ctx, id)
	if err != nil {
		return "", err
	}
	now := h.now()
	did, err := h.DB.Enqueue(ctx, s, EventTest, now, func(seq uint64) ([]byte, error) {
		return testPayload(s.ID, now, seq)
	})
	if err == nil {
		h.wake()
	}
	return did, err
}

// Delete removes a subscription.
func (h *Hooks) Delete(ctx context.Context, id string) error { return h.DB.DeleteSubscription(ctx, id) }

// Retry sends a dead delivery again.
func (h *Hooks) Retry(ctx context.Context, id string) error {
	err := h.DB.Retry(ctx, id, h.now())
	if err == nil {
		h.wake()
	}
	return err
}

// Subscription, Subscriptions, Delivery and Deliveries read the outbox.
func (h *Hooks) Subscription(ctx context.Context, id string) (Subscription, error) {
	return h.DB.Subscription(ctx, id)
}

func (h *Hooks) Subscriptions(ctx context.Context) ([]Subscription, error) {
	return h.DB.Subscriptions(ctx)
}

// Backlog is how many events wait for a receiver, not yet started.
func (h *Hooks) Backlog(ctx context.Context, id string) (int, error) { return h.DB.Backlog(ctx, id) }

func (h *Hooks) Delivery(ctx context.Context, id string) (Delivery, error) {
	return h.DB.Delivery(ctx, id)
}

func (h *Hooks) Deliveries(ctx context.Context, subscriptionID string, limit int) ([]Delivery, error) {
	return h.DB.Deliveries(ctx, subscriptionID, limit)
}

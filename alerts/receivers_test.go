package alerts

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestConfiguredReceiverValidate: a configured receiver is checked by the
// rules every receiver's fields follow, each error "field: what"; its URL
// may carry credentials, unlike one given through the API.
func TestConfiguredReceiverValidate(t *testing.T) {
	secret := NewSecret()
	ok := ConfiguredReceiver{Name: "ops", URL: "https://hooks.example.com/vigil", Secret: secret}
	for _, tc := range []struct {
		name string
		edit func(c *ConfiguredReceiver)
		want []string
	}{
		{"valid", func(*ConfiguredReceiver) {}, nil},
		{"credentials in the URL", func(c *ConfiguredReceiver) { c.URL = "https://ops:pa55word@hooks.example.com/vigil" }, nil},
		{"every field given", func(c *ConfiguredReceiver) {
			c.Format, c.Events = FormatAlertmanager, []string{"alert.firing", "webhook.*"}
		}, nil},
		{"bad name", func(c *ConfiguredReceiver) { c.Name = "ops team" }, []string{"name: "}},
		{"no URL", func(c *ConfiguredReceiver) { c.URL = "" }, []string{"url: want an absolute http:// or https:// URL"}},
		{"not http", func(c *ConfiguredReceiver) { c.URL = "ftp://hooks.example.com/" }, []string{"url: "}},
		{"a URL too long", func(c *ConfiguredReceiver) { c.URL = "https://hooks.example.com/" + strings.Repeat("x", maxURLBytes) }, []string{"url: "}},
		{"bad secret", func(c *ConfiguredReceiver) { c.Secret = "hunter2" }, []string{"secret: secret must start with whsec_"}},
		{"bad format", func(c *ConfiguredReceiver) { c.Format = "xml" }, []string{`format: "xml" is not standard or alertmanager`}},
		{"bad event", func(c *ConfiguredReceiver) { c.Events = []string{"alert.fired"} }, []string{"events: "}},
		{"everything wrong", func(c *ConfiguredReceiver) {
			*c = ConfiguredReceiver{Name: "-", URL: "x", Secret: "x", Format: "x", Events: []string{"x"}}
		}, []string{"name: ", "url: ", "secret: ", "format: ", "events: "}},
	} {
		c := ok
		tc.edit(&c)
		errs := c.Validate()
		if len(errs) != len(tc.want) {
			t.Errorf("%s: %v, want %d errors", tc.name, errs, len(tc.want))
			continue
		}
		for i, err := range errs {
			if !strings.HasPrefix(err.Error(), tc.want[i]) || errors.Is(err, ErrInvalid) {
				t.Errorf("%s: %q, want it to start with %q", tc.name, err, tc.want[i])
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "pa55word") {
				t.Errorf("%s: a secret in %q", tc.name, err)
			}
		}
	}
}

// TestConfigure: the receivers of the config file are saved active, with
// ids cfg-<name> and the defaults, keep when they were first configured,
// and are disabled once the file no longer has them; receivers from the
// API are left alone, and an invalid configured receiver changes nothing.
func TestConfigure(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	now := t0
	rs := &Receivers{Outbox: db, Now: func() time.Time { return now }}
	api, err := rs.Create(ctx, ReceiverInput{URL: ptr("https://bridge.example.com/vigil")})
	if err != nil {
		t.Fatal(err)
	}
	ops := ConfiguredReceiver{Name: "ops", URL: "https://ops:pa55word@hooks.example.com/vigil", Secret: NewSecret()}
	pager := ConfiguredReceiver{Name: "pager", URL: "https://pager.example.com/", Secret: NewSecret(), Format: FormatAlertmanager}
	if err := rs.Configure(ctx, []ConfiguredReceiver{ops, pager}); err != nil {
		t.Fatal(err)
	}
	got, err := rs.Get(ctx, "cfg-ops")
	if err != nil || got.Status != ReceiverActive || got.Origin != "config" || got.URL != ops.URL || got.Secret != ops.Secret ||
		got.Format != FormatStandard || strings.Join(got.Events, ",") != "alert.*" || !got.CreatedAt.Equal(t0) {
		t.Fatalf("cfg-ops: %+v %v", got, err)
	}

	// The next start: ops changed its format, pager is gone from the file.
	now = t0.Add(time.Hour)
	ops.Format = FormatAlertmanager
	if err := rs.Configure(ctx, []ConfiguredReceiver{ops}); err != nil {
		t.Fatal(err)
	}
	if got, _ := rs.Get(ctx, "cfg-ops"); got.Format != FormatAlertmanager || !got.CreatedAt.Equal(t0) || !got.UpdatedAt.Equal(now) {
		t.Fatalf("cfg-ops configured again: %+v", got)
	}
	if got, _ := rs.Get(ctx, "cfg-pager"); got.Status != ReceiverDisabled || !got.UpdatedAt.Equal(now) {
		t.Fatalf("cfg-pager, no longer configured: %+v", got)
	}
	if got, _ := rs.Get(ctx, api.ID); got.Status != ReceiverPending {
		t.Fatalf("the receiver from the API: %+v", got)
	}

	// An invalid receiver in the file: nothing changes.
	before, _ := rs.List(ctx)
	bad := ConfiguredReceiver{Name: "bad", URL: "ftp://x", Secret: NewSecret()}
	if err := rs.Configure(ctx, []ConfiguredReceiver{bad}); err == nil || !strings.Contains(err.Error(), `receiver "bad": url: `) {
		t.Fatalf("an invalid receiver: %v", err)
	}
	if after, _ := rs.List(ctx); !reflect.DeepEqual(after, before) {
		t.Fatalf("an invalid receiver changed something: %+v", after)
	}
}

func ptr[T any](v T) *T { return &v }

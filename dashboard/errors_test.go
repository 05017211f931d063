package dashboard

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"vigil/alerts"
	"vigil/stream"
)

// TestStatusOf: every error a client can cause has its status in one
// table; anything else is a 500 that says nothing of the inside.
func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		msg    string
	}{
		{fmt.Errorf("%w: unknown event type %q", stream.ErrBadFilter, "x"), http.StatusBadRequest, "bad filter: unknown event type"},
		{stream.ErrClosed, http.StatusServiceUnavailable, "shutting down"},
		{&alerts.NotFoundError{What: "receiver", ID: "rcv_x"}, http.StatusNotFound, `no receiver "rcv_x"`},
		{alerts.ErrNotActive, http.StatusNotFound, "GET /api/v1/alerts lists them"},
		{alerts.ErrNotDead, http.StatusConflict, "only a dead delivery"},
		{fmt.Errorf("%w: %w", alerts.ErrStore, errors.New("database or disk is full (13)")), http.StatusServiceUnavailable, "the store cannot save: database or disk is full"},
		{errMediaType, http.StatusUnsupportedMediaType, "Content-Type: application/json"},
		{errors.New("open /var/lib/secret: permission denied"), http.StatusInternalServerError, "internal error"},
	} {
		status, msg := statusOf(tc.err)
		if status != tc.status || !strings.Contains(msg, tc.msg) {
			t.Errorf("%v: %d %q, want %d with %q", tc.err, status, msg, tc.status, tc.msg)
		}
	}
}

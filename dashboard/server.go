// Package dashboard is vigil's HTTP edge, the end of the data flow:
//
//	stream.Hub -> one session per client (session.go) -> a transport:
//	  Server-Sent Events and NDJSON (events.go), long polling (poll.go),
//	  WebSocket (ws.go), Watch over gRPC, gRPC-Web and Connect (rpc.go)
//	collector.Store -> the pages (pages.go) and the series API (api.go)
//	alerts -> the alerts API, acknowledgements and receivers (hooks.go)
//
// plus vigil's own /metrics and the health checks. Every request passes
// the same checks first (guard.go: Host, cross-origin writes, body time,
// panics), every JSON body is read by one strict decoder, and every error
// answer is JSON, its status from one table (errors.go). It reads from the
// store and subscribes to the hub; it never writes to either.
package dashboard

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"vigil/alerts"
	"vigil/collector"
	"vigil/stream"
)

// Stream defaults.
const (
	DefaultRetry        = time.Second      // base reconnect delay sent in retry:; up to twice this with jitter
	DefaultWriteTimeout = 10 * time.Second // deadline for each write to a streaming client
)

// Hub is what the server needs of stream.Hub.
type Hub interface {
	Subscribe(cur stream.Cursor, f stream.Filter) (*stream.Subscriber, error)
	Snapshot(f stream.Filter) ([]*stream.Event, uint64)
	LastID() uint64
}

var _ Hub = (*stream.Hub)(nil)

// Alerts is what the server needs of alerts.Evaluator.
type Alerts interface {
	Active() []alerts.Alert
	RuleList() []alerts.Rule
	Ack(ctx context.Context, fingerprint, by string) (alerts.Alert, error)
}

var _ Alerts = (*alerts.Evaluator)(nil)

// Journal is what the server reads of the alerts' past: their transitions
// by time (alerts.DB), drawn as marks on the charts.
type Journal interface {
	Marks(ctx context.Context, source string, from, to time.Time) ([]alerts.Mark, error)
}

var _ Journal = (*alerts.DB)(nil)

// Fleet is what the server needs of collector.Fleet: the upstreams a hub
// follows. Status must be safe for concurrent use.
type Fleet interface {
	Status() []collector.UpstreamStatus
}

var _ Fleet = (*collector.Fleet)(nil)

// A Check is a condition of readiness: /readyz answers 503 with its
// error while Err returns one. Err must be cheap and safe for concurrent
// use. A Soft check degrades rather than fails: /readyz still answers 200,
// saying what is wrong (a replica cut off from NATS serves what it has,
// and a load balancer should keep sending it clients). Every failing
// check is shown on the pages too.
type Check struct {
	Name string
	Err  func() error
	Soft bool
}

// problems are the failing checks, each "name: error", and whether any
// of them is not soft.
func (s *Server) problems() (list []string, hard bool) {
	for _, c := range s.opts.Checks {
		if err := c.Err(); err != nil {
			list = append(list, c.Name+": "+err.Error())
			hard = hard || !c.Soft
		}
	}
	return list, hard
}

// Options configure a Server.
type Options struct {
	Alerts Alerts // nil: no alerting
	// Journal answers for alert transitions by time; nil: none kept.
	Journal Journal
	// Fleet, on a hub, lists its upstreams; the dashboard then shows the
	// hosts as a table rather than a panel each. nil: not a hub.
	Fleet  Fleet
	Checks []Check  // more conditions of /readyz
	Tokens []string // bearer tokens required for writes; none: writes are open
	// ReadTokens, when set, are required to read anything but the health
	// checks and static files (a write token reads too); they write
	// nothing.
	ReadTokens []string
	Hub        Hub
	Store      *collector.Store
	// History answers for the past the ring no longer holds; nil: none.
	History      History
	Metrics      *metrics.Set // written on /metrics with process and Go metrics
	Logger       *slog.Logger
	Version      string
	Demo         bool          // label the page as showing demo data
	Interval     time.Duration // sampling interval, reported by the series API
	Heartbeat    time.Duration // the hub's heartbeat; the page falls back to long polling when a stream is silent longer (stream.DefaultHeartbeat)
	Retry        time.Duration // DefaultRetry
	WriteTimeout time.Duration // DefaultWriteTimeout
	BodyTimeout  time.Duration // DefaultBodyTimeout
	// Loopback says vigil listens on a loopback address: it then answers
	// only to loopback host names and addresses, and AllowedHosts.
	Loopback bool
	// AllowedHosts are the host names (or "*.example.com" patterns) that
	// requests may carry in Host besides IP addresses and loopback names;
	// empty, on a listener that is not loopback, allows any.
	AllowedHosts []string
	// Receivers serves the receivers API (alerts.Receivers); nil: none.
	Receivers Receivers
	// SessionSecret is the secret sign-in sessions are signed with, the
	// same on every replica (a file under --data, or NATS); nil or empty
	// until it is known. nil: one made for this process.
	SessionSecret func() []byte
	// PushKey is the VAPID public key browsers subscribe to pushes with
	// (alerts.PushKeys.Public); nil or "": no "Notify me".
	PushKey func() string
	// Silences keeps the silences the API and the page make (alerts.DB,
	// or cluster.AlertStates on a replica); nil: none.
	Silences alerts.SilenceStore
	// Jitter returns a random duration in [0, n); nil uses math/rand.
	Jitter func(n time.Duration) time.Duration
	Now    func() time.Time
}

// Server serves vigil's HTTP surface. Create it with New.
type Server struct {
	opts     Options
	mux      *http.ServeMux
	ready    atomic.Bool
	closing  atomic.Bool
	clients  map[transportName]*atomic.Int64 // connected clients by transport
	rpcPaths []string                        // the RPC services' paths (rpc.go)
	rpcCache *rpcEvents                      // the events Watch clients are sent, as messages
	handler  http.Handler                    // mux behind the checks every request passes
	panics   *metrics.Counter
}

// New returns a server with its routes.
func New(opts Options) *Server {
	if opts.Retry <= 0 {
		opts.Retry = DefaultRetry
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = stream.DefaultHeartbeat
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = DefaultBodyTimeout
	}
	for i, h := range opts.AllowedHosts {
		opts.AllowedHosts[i] = strings.TrimSuffix(strings.ToLower(h), ".")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Jitter == nil {
		opts.Jitter = randomJitter
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewSet()
	}
	if opts.SessionSecret == nil {
		secret := make([]byte, 32)
		rand.Read(secret)
		opts.SessionSecret = func() []byte { return secret }
	}
	s := &Server{opts: opts, mux: http.NewServeMux(),
		panics: opts.Metrics.GetOrCreateCounter(`vigil_http_panics_total`)}
	s.clients = clientGauges(s)
	// /metrics carries # HELP and # TYPE (a switch of the library's,
	// for the whole process).
	metrics.ExposeMetadata(true)
	s.routes()
	s.handler = s.edge(s.mux)
	return s
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /events", s.handleEvents)
	s.mux.HandleFunc("GET /api/v1/poll", s.handlePoll)
	s.mux.HandleFunc("GET /api/v1/stream", s.handleNDJSON)
	s.mux.HandleFunc("GET /ws", s.handleWS)
	s.mux.HandleFunc("GET /api/v1/snapshot", s.handleSnapshot)
	s.mux.HandleFunc("GET /api/v1/series", s.handleSeriesList)
	s.mux.HandleFunc("GET /api/v1/alerts", s.handleAlerts)
	s.mux.HandleFunc("GET /api/v1/alerts/transitions", s.handleTransitions)
	s.mux.HandleFunc("POST /api/v1/alerts/{fingerprint}/ack", s.writeAuth(s.handleAck))
	s.mux.HandleFunc("GET /api/v1/rules", s.handleRules)
	s.mux.HandleFunc("GET /api/v1/upstreams", s.handleUpstreams)
	s.mux.HandleFunc("GET /api/v1/series/{path...}", s.handleSeries)
	s.receiverRoutes()
	s.silenceRoutes()
	s.pushRoutes()
	s.mux.HandleFunc("GET /login", s.handleSignInForm)
	s.mux.HandleFunc("POST /login", s.handleSignIn)
	s.mux.HandleFunc("POST /logout", s.handleSignOut)
	s.rpcRoutes()
	s.mux.HandleFunc("GET /metrics", s.handleMetrics)
	s.mux.HandleFunc("GET /healthz", s.handleHealthz)
	s.mux.HandleFunc("GET /readyz", s.handleReadyz)
	s.mux.HandleFunc("GET /{$}", s.handleIndex)
	s.mux.HandleFunc("GET /source/{name...}", s.handleSource)
	s.mux.Handle("GET /static/{file...}", loadStatic())
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
}

// SetReady marks the server ready (or not) for /readyz.
func (s *Server) SetReady(ok bool) { s.ready.Store(ok) }

// Shutdown makes /readyz fail, so load balancers stop sending traffic
// while streams drain.
func (s *Server) Shutdown() { s.closing.Store(true) }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if err := s.readiness(); err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if failing, _ := s.problems(); len(failing) > 0 {
		w.Write([]byte("ready, degraded: " + strings.Join(failing, "; ") + "\n"))
		return
	}
	w.Write([]byte("ready\n"))
}

// readiness says why vigil is not ready to serve, or nil: it is starting
// or stopping, or a check that is not soft fails.
func (s *Server) readiness() error {
	switch {
	case s.closing.Load():
		return errors.New("shutting down")
	case !s.ready.Load():
		return errors.New("starting: first samples not collected yet")
	}
	if failing, hard := s.problems(); hard {
		return errors.New(strings.Join(failing, "; "))
	}
	return nil
}

// decodeStrict reads one JSON value: known fields only, nothing after it.
// Every JSON request (HTTP bodies, WebSocket messages) is read with it.
func decodeStrict(data io.Reader, v any) error {
	dec := json.NewDecoder(data)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

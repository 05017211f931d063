package vigiltest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATS is a real NATS server with JetStream, the nats-server module run
// in the test's process on a loopback port, its store in the test's
// temporary folder. Restart stops and starts it on the same port and
// store, as a server that crashed and came back.
type NATS struct {
	URL  string
	t    testing.TB
	opts server.Options
	srv  *server.Server
}

// StartNATS starts a NATS server with JetStream; it stops with the test.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	n := &NATS{t: t, opts: server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true,
	}}
	n.start()
	n.opts.Port = n.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(n.Stop)
	return n
}

func (n *NATS) start() {
	n.t.Helper()
	opts := n.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		n.t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		n.t.Fatal("nats-server did not start within 10s")
	}
	n.srv = srv
	n.URL = srv.ClientURL()
}

// Stop shuts the server down.
func (n *NATS) Stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

// Start starts a stopped server again on its port and store.
func (n *NATS) Start() {
	n.t.Helper()
	if n.srv == nil {
		n.start()
	}
}

// Connect is a client connection that stays until the test ends, and
// reconnects for ever.
func (n *NATS) Connect() *nats.Conn {
	n.t.Helper()
	nc, err := nats.Connect(n.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(nc.Close)
	return nc
}

// StartNATSCluster starts n NATS servers with JetStream, routed to one
// another on loopback ports as one cluster; they stop with the test. URLs
// lists every server's client URL, as a client's server list.
func StartNATSCluster(t testing.TB, n int) (nodes []*NATS, urls string) {
	t.Helper()
	routes := make([]string, n)
	for i := range routes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		routes[i] = ln.Addr().String()
		ln.Close()
	}
	var list []string
	for i := range n {
		var peers []*url.URL
		for j, r := range routes {
			if j != i {
				peers = append(peers, &url.URL{Scheme: "nats-route", Host: r})
			}
		}
		_, port, _ := net.SplitHostPort(routes[i])
		var p int
		fmt.Sscan(port, &p)
		node := &NATS{t: t, opts: server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "vigil-test", Host: "127.0.0.1", Port: p},
			Routes:  peers,
		}}
		node.start()
		node.opts.Port = node.srv.Addr().(*net.TCPAddr).Port
		t.Cleanup(node.Stop)
		nodes = append(nodes, node)
		list = append(list, node.URL)
	}
	return nodes, strings.Join(list, ",")
}

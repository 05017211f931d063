package vigiltest

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Victoria is a VictoriaMetrics server (Debian's victoria-metrics) a test
// runs on a loopback port, with its data in the test's temporary folder.
type Victoria struct {
	URL  string // http://127.0.0.1:port
	t    testing.TB
	addr string
	dir  string
	cmd  *exec.Cmd
}

// NewVictoria picks a port for a VictoriaMetrics server without starting
// it: a test can first see vigil face a server that is not there. Without
// the binary the test is skipped here, and fails in CI (CI=1), where
// .ci/run installs it.
func NewVictoria(t testing.TB) *Victoria {
	t.Helper()
	if _, err := exec.LookPath("victoria-metrics"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no victoria-metrics in CI: .ci/run must install it")
		}
		t.Skip("no victoria-metrics here; apt-get install victoria-metrics to run this test")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	v := &Victoria{URL: "http://" + addr, t: t, addr: addr, dir: t.TempDir()}
	t.Cleanup(v.Stop)
	return v
}

// StartVictoria starts a VictoriaMetrics server for a test.
func StartVictoria(t testing.TB) *Victoria {
	v := NewVictoria(t)
	v.Start()
	return v
}

// Start runs the server and waits until it answers /health. Queries see
// samples at once (-search.latencyOffset=0s), so that a test need not
// wait half a minute.
func (v *Victoria) Start() {
	v.t.Helper()
	v.cmd = exec.Command("victoria-metrics", "-httpListenAddr", v.addr, "-storageDataPath", filepath.Join(v.dir, "data"),
		"-retentionPeriod", "100y", "-search.latencyOffset", "0s", "-search.disableCache", "-loggerLevel", "ERROR")
	v.cmd.Stdout, v.cmd.Stderr = os.Stderr, os.Stderr
	if err := v.cmd.Start(); err != nil {
		v.t.Fatal(err)
	}
	Eventually(v.t, 20*time.Second, "victoria-metrics answers on "+v.addr, func() bool {
		resp, err := http.Get(v.URL + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// Stop stops the server, if it runs.
func (v *Victoria) Stop() {
	if v.cmd == nil || v.cmd.Process == nil {
		return
	}
	v.cmd.Process.Kill()
	v.cmd.Wait()
	v.cmd = nil
}

// Flush makes what the server took searchable now (its
// /internal/force_flush).
func (v *Victoria) Flush() {
	resp, err := http.Get(v.URL + "/internal/force_flush")
	if err == nil {
		resp.Body.Close()
	}
}

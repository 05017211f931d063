package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"vigil/collector"
	"vigil/internal/vigiltest"
)

// TestHubListsItsUpstreams runs an agent and a hub that follows it (and an
// address nothing answers on): /api/v1/upstreams on the hub lists both,
// the agent's with its host and labels; an agent, not a hub, lists none.
func TestHubListsItsUpstreams(t *testing.T) {
	dir := t.TempDir()
	agentCfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(agentCfg, []byte("host: {name: web-1}\n"), 0o644)
	agent, _ := startVigil(t, "--data", t.TempDir(), "--config", agentCfg)
	hubCfg := filepath.Join(dir, "hub.yaml")
	os.WriteFile(hubCfg, []byte("upstreams:\n  - {url: '"+agent+"', name: web-1, labels: {role: web}}\n  - {url: 'http://127.0.0.1:9', name: nowhere}\n"), 0o644)
	hub, _ := startVigil(t, "--data", t.TempDir(), "--config", hubCfg)

	var out struct {
		Upstreams []collector.UpstreamStatus `json:"upstreams"`
	}
	vigiltest.Eventually(t, 10*time.Second, "the hub follows the agent and sees its host", func() bool {
		getJSONInto(t, hub+"/api/v1/upstreams", &out)
		return len(out.Upstreams) == 2 && out.Upstreams[1].Connected && len(out.Upstreams[1].Hosts) > 0 && out.Upstreams[0].Error != ""
	})
	if u := out.Upstreams[1]; u.Name != "web-1" || u.Labels["role"] != "web" || u.Hosts[0] != "host/web-1" || u.Position == 0 {
		t.Errorf("the agent's upstream: %+v", u)
	}
	if u := out.Upstreams[0]; u.Name != "nowhere" || u.Connected {
		t.Errorf("the unreachable upstream: %+v", u)
	}
	getJSONInto(t, agent+"/api/v1/upstreams", &out)
	if out.Upstreams == nil || len(out.Upstreams) != 0 {
		t.Errorf("an agent lists upstreams: %+v", out.Upstreams)
	}
}

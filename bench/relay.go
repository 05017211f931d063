package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// serveRelay is the reference beside a fleet's hub: the least a Go process
// can do to put a thousand agents' events on one stream. It follows each
// agent of an upstreams file (Prometheus file_sd JSON) with net/http as
// the hub does, cuts its stream into events, numbers each sample anew and
// writes it to every subscriber, flushed as it comes — nothing parsed,
// kept, evaluated or written to disk. A sample goes out as the hub writes
// it, as far as the bench's subscriber reads: its data with the relay's
// number for "seq" and the agent's in "upstream". /metrics counts the
// samples published, as the hub's vigil_events_published_total does.
func serveRelay(addr, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var groups []struct{ Targets []string }
	if err := json.Unmarshal(b, &groups); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	r := &relay{clients: map[chan []byte]struct{}{}}
	for _, g := range groups {
		for _, t := range g.Targets {
			go r.follow(t)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "vigil_events_published_total{type=\"sample\"} %d\n", r.seq.Load())
	})
	mux.HandleFunc("/events", r.serve)
	return listenAndServe(addr, mux)
}

type relay struct {
	seq     atomic.Uint64
	mu      sync.Mutex
	clients map[chan []byte]struct{}
}

// follow reads one agent's stream (its /events, as the hub asks), again
// from where it stood whenever it ends.
func (r *relay) follow(agent string) {
	url := strings.TrimSuffix(agent, "/") + "/events"
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	var last string
	for {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", url, nil)
		req.Header.Set("Accept", "text/event-stream")
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		if resp, err := client.Do(req); err == nil {
			readEvents(resp.Body, 16<<10, func(typ, id string, data []byte) { // the bench's own reader
				if id != "" {
					last = id
				}
				if typ == "sample" {
					r.publish(data)
				}
			})
			resp.Body.Close()
		}
		time.Sleep(time.Second)
	}
}

// publish numbers an agent's sample and hands it to every subscriber.
func (r *relay) publish(data []byte) {
	rest, ok := bytes.CutPrefix(data, []byte(`{"seq":`))
	comma := bytes.IndexByte(rest, ',')
	if !ok || comma < 0 || len(rest) < comma+2 {
		return
	}
	agentSeq, rest := rest[:comma], rest[comma:len(rest)-1] // from its "," to before its "}"
	r.mu.Lock()
	defer r.mu.Unlock()
	seq := r.seq.Add(1) // under the lock: the subscriber gets them in order
	f := make([]byte, 0, len(data)+96)
	f = append(f, "id: "...)
	f = strconv.AppendUint(f, seq, 10)
	f = append(f, "\nevent: sample\ndata: {\"seq\":"...)
	f = strconv.AppendUint(f, seq, 10)
	f = append(f, rest...)
	f = append(f, `,"upstream":{"seq":`...)
	f = append(f, agentSeq...)
	f = append(f, "}}\n\n"...)
	for c := range r.clients {
		select {
		case c <- f:
		default:
		}
	}
}

// serve writes every sample to one subscriber, flushed as it comes (as
// serveRef does for the fan-out).
func (r *relay) serve(w http.ResponseWriter, req *http.Request) {
	c := make(chan []byte, 4096)
	r.mu.Lock()
	r.clients[c] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.clients, c)
		r.mu.Unlock()
	}()
	writeFrames(w, req, c)
}

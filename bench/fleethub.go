package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"vigil/alerts"
	"vigil/collector"
	"vigil/dashboard"
	"vigil/history"
	"vigil/stream"
)

// serveFleet is a hub wired as vigil's app.go wires one with an
// upstreams file and its host source off — the event journal, the hub,
// the ring store, the scheduler, collector.Fleet, the default rules and
// AgentDown evaluated into the alert store, the dashboard — with
// net/http/pprof beside it, so that bench fleet -pprof can take its CPU
// and heap profiles. (vigil itself serves no pprof; this is the same code,
// wired again, not the binary.)
func serveFleet(addr, file, dir string) error {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	set := metrics.NewSet()
	ids := stream.IDFile(filepath.Join(dir, "last-event-id"))
	floor, _ := ids.Load()
	first := stream.NextRunID(floor, time.Now())
	journal, err := stream.OpenJournal(dir, first)
	if err != nil {
		return err
	}
	defer journal.Close()
	hub := stream.NewHub(stream.HubOptions{FirstID: first, Metrics: set, History: journal, Logger: log})
	store := collector.NewStore(10*time.Minute, collector.DefaultInterval)
	hist, err := history.Open(ctx, history.Options{Path: filepath.Join(dir, "history.db"), Logger: log, Metrics: set})
	if err != nil {
		return err
	}
	defer hist.Close()
	store.RecordInto(hist)
	go hist.Run(ctx)
	sched := &collector.Scheduler{Store: store, Hub: hub, Interval: collector.DefaultInterval, Timeout: collector.DefaultInterval, Metrics: set, Logger: log}
	fleet := &collector.Fleet{Store: store, Hub: hub, Scheduler: sched, File: file,
		Positions: collector.PositionFile(filepath.Join(dir, "upstreams.json")), Metrics: set, Logger: log}
	db, err := alerts.Open(dir)
	if err != nil {
		return err
	}
	defer db.Close()
	rules := append(alerts.DefaultRules(), alerts.AgentDownRule(alerts.DefaultAgentDownFor))
	for i := range rules {
		if err := rules[i].Validate(); err != nil { // which also fills in what a rule leaves out, as vigil's plan does
			return err
		}
	}
	eval := &alerts.Evaluator{Rules: rules, Ring: store, Hub: hub, States: db, Interval: collector.DefaultInterval, Logger: log, Metrics: set}
	if err := eval.Load(ctx); err != nil {
		return err
	}
	go hub.Run(ctx)
	go sched.Run(ctx)
	go fleet.Run(ctx)
	go eval.Run(ctx)
	web := dashboard.New(dashboard.Options{Alerts: eval, Hub: hub, Store: store, Metrics: set, Logger: log, Interval: collector.DefaultInterval, Loopback: true})
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.Handle("/", web)
	return listenAndServe(addr, mux)
}

// fetchProfile saves one of the in-process hub's profiles.
func fetchProfile(base, path, out string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := f.ReadFrom(resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

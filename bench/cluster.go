package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"vigil/cluster"
	"vigil/collector"
	"vigil/dashboard"
	"vigil/stream"
)

// serveVigilNATS is serveVigil on JetStream: the hub's log is a
// cluster.Log on a NATS server. With natsURL "" it runs the NATS server
// itself, in this process (its CPU and memory are then counted with
// vigil's), prints its URL, and publishes one synthetic sample a second;
// with a URL it is a second replica that only serves the stream.
func serveVigilNATS(addr, natsURL string) error {
	publish := natsURL == ""
	if publish {
		dir, err := os.MkdirTemp("", "vigil-bench-nats")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
		if err != nil {
			return err
		}
		go ns.Start()
		if !ns.ReadyForConnections(10 * time.Second) {
			return errors.New("nats-server did not start")
		}
		natsURL = ns.ClientURL()
		fmt.Println("nats", natsURL)
	}
	nc, err := nats.Connect(natsURL, nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	set := metrics.NewSet()
	l, err := cluster.NewLog(nc, cluster.LogOptions{Replica: addr, Metrics: set})
	if err != nil {
		return err
	}
	hub := stream.NewHub(stream.HubOptions{Log: l, Metrics: set})
	web := dashboard.New(dashboard.Options{Hub: hub, Store: collector.NewStore(time.Minute, time.Second), Metrics: set})
	go hub.Run(context.Background())
	go l.Run(context.Background(), hub, nil)
	select {
	case <-l.Ready():
	case <-time.After(10 * time.Second):
		return errors.New("the stream was not reached")
	}
	if publish {
		go publishEverySecond(hub)
	}
	return listenAndServe(addr, web)
}

// clusterBench measures the stream through JetStream against the
// in-process engine at the same load, then two replicas on one stream,
// each with half the subscribers.
func clusterBench(args []string) error {
	fs := flag.NewFlagSet("cluster", flag.ExitOnError)
	subs := fs.Int("subs", 1000, "subscribers, for the engines side by side")
	split := fs.Int("replicas-subs", 10000, "subscribers over two replicas, half each (0: skip)")
	warm := fs.Duration("warm", 5*time.Second, "time after connecting before measuring")
	measure := fs.Duration("measure", 20*time.Second, "measurement window")
	fs.Parse(args)
	var rlim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rlim)
	fmt.Printf("Machine: %d CPUs, %s; open-file limit %d; load generator in the same machine; one event a second.\n\n", runtime.NumCPU(), runtime.Version(), rlim.Cur)
	fmt.Println("| subscribers | engine | held | events received | missed | p50 latency | p99 latency | memory / subscriber | CPU (% of one core) |")
	fmt.Println("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
	var pair [2]result
	for i, impl := range []string{"vigil", "vigil-nats"} {
		r, err := measureFanout(impl, *subs, *warm, *measure)
		if err != nil {
			return fmt.Errorf("%s with %d: %w", impl, *subs, err)
		}
		pair[i] = r
		fmt.Printf("| %d | %s | %d | %d | %d | %s | %s | %.1f KiB | %.1f%% |\n", r.subs, engineName(impl), r.held, r.received, r.missed,
			r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.memPerSub/1024, r.cpuPercent)
	}
	in, js := pair[0], pair[1]
	fmt.Printf("| %d | JetStream ÷ in-process | | | | %.2f× | %.2f× | %.2f× | %.2f× |\n\n", *subs,
		ratio(float64(js.p50), float64(in.p50)), ratio(float64(js.p99), float64(in.p99)),
		ratio(js.memPerSub, in.memPerSub), ratio(js.cpuPercent, in.cpuPercent))
	if *split <= 0 {
		return nil
	}
	return twoReplicas(*split, *warm, *measure)
}

func engineName(impl string) string {
	if impl == "vigil-nats" {
		return "JetStream (cluster.Log; nats-server in the same process)"
	}
	return "in-process (MemoryLog)"
}

// twoReplicas runs a replica with the NATS server and the publisher, and
// a second replica on its NATS, and subscribes n/2 clients to each.
func twoReplicas(n int, warm, measure time.Duration) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	a, err := startServer(self, "serve-vigil-nats", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer a.stop()
	b, err := startServer(self, "serve-vigil-nats", "127.0.0.1:0", a.nats)
	if err != nil {
		return err
	}
	defer b.stop()
	tr := &http.Transport{MaxIdleConnsPerHost: -1, DisableCompression: true}
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	all := subscribeAll(ctx, client, &wg, n, func(i int) string {
		if i%2 == 1 {
			return b.addr
		}
		return a.addr
	})
	var cpuB float64
	cpuA, _, held := measureWindow(a, all, warm, measure, func(end bool) {
		if !end {
			cpuB = b.cpuSeconds()
		} else {
			cpuB = 100 * (b.cpuSeconds() - cpuB) / measure.Seconds()
		}
	})
	cancel()
	tr.CloseIdleConnections()
	wg.Wait()
	w := tallyAll(all)
	fmt.Println("| replicas | subscribers | held | events | received | missed | p50 latency | p99 latency | CPU replica 1 (and NATS) | CPU replica 2 |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	fmt.Printf("| 2 | %d (%d each) | %d | %d | %d | %d | %s | %s | %.1f%% | %.1f%% |\n", n, n/2, held, w.events, w.received, w.missed,
		w.p50.Round(time.Millisecond), w.p99.Round(time.Millisecond), cpuA, cpuB)
	fmt.Printf("\n- every event published in the window (%d) was to reach all %d subscribers: %d deliveries expected, %d received, %d missed.\n",
		w.events, n, w.events*n, w.received, w.missed)
	if strings.TrimSpace(a.nats) == "" {
		return errors.New("no NATS URL from the first replica")
	}
	return nil
}

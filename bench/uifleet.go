package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	"vigil/collector"
	"vigil/dashboard"
	"vigil/stream"
)

// syntheticHost returns host i's sample at each call: the metrics a real
// host source sends (four cores, two disks' worth of filesystems, one
// interface), wandering, with a few hosts busy or full.
func syntheticHost(i int) func() map[string]float64 {
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	cpuBase := 5 + 40*rng.Float64()
	if i%20 == 3 {
		cpuBase = 85
	}
	mem := 20 + 60*rng.Float64()
	disk := 10 + 70*rng.Float64()
	if i%50 == 11 {
		disk = 96
	}
	rx := math.Pow(10, 3+3*rng.Float64())
	up := 86400 * 30 * rng.Float64()
	t := 0.0
	return func() map[string]float64 {
		t++
		cpu := min(100, max(0, cpuBase*(1+0.3*math.Sin(t/20+float64(i)))+5*rng.NormFloat64()))
		m := map[string]float64{
			"cpu.percent": cpu, "cpu.cores": 4, "cpu.user_percent": cpu * 0.7, "cpu.system_percent": cpu * 0.25,
			"cpu.iowait_percent": cpu * 0.03, "cpu.steal_percent": 0,
			"mem.used_percent": mem, "mem.used_bytes": mem / 100 * 16e9, "mem.available_bytes": (100 - mem) / 100 * 16e9,
			"swap.used_percent": 0, "swap.used_bytes": 0,
			"load.1": cpu / 25, "load.5": cpu / 26, "load.15": cpu / 27, "load.5_per_core": cpu / 104,
			"disk.read_bytes_per_sec": 1e5 * rng.Float64(), "disk.write_bytes_per_sec": 3e5 * rng.Float64(),
			"disk.read_bytes_per_sec{device=vda}": 1e5 * rng.Float64(), "disk.write_bytes_per_sec{device=vda}": 3e5 * rng.Float64(),
			"net.rx_bytes_per_sec": rx * (1 + 0.2*rng.NormFloat64()), "net.tx_bytes_per_sec": rx / 3,
			"net.rx_bytes_per_sec{iface=eth0}": rx, "net.tx_bytes_per_sec{iface=eth0}": rx / 3,
			"host.uptime_seconds": up + t, "host.procs": 150 + float64(i%40),
		}
		for j, mount := range []string{"/", "/var", "/data"} {
			used := min(100, disk*float64(j+1)/3)
			label := "{mount=" + mount + "}"
			m["fs.used_percent"+label], m["fs.used_bytes"+label], m["fs.size_bytes"+label] = used, used*1e9, 100e9
		}
		for c := range 4 {
			m[fmt.Sprintf("cpu.percent{core=%d}", c)] = min(100, max(0, cpu+10*rng.NormFloat64()))
		}
		return m
	}
}

// publishHosts has the agents' hubs publish every host's sample once a
// second, host i at i/hosts of the second, as agents started at different
// times sample, until ctx is done.
func publishHosts(ctx context.Context, hubs []*stream.Hub, hosts int) {
	sample := make([]func() map[string]float64, hosts)
	for i := range hosts {
		sample[i] = syntheticHost(i)
	}
	tick := time.NewTicker(time.Second / time.Duration(hosts))
	defer tick.Stop()
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		i := k % hosts
		src := fmt.Sprintf("host/h%04d", i)
		hubs[i%len(hubs)].Publish(stream.Message{Type: stream.TypeSample, Source: src, Time: time.Now(), Key: "sample/" + src,
			Body: collector.SampleBody{Metrics: sample[i]()}})
	}
}

// serveFleetPage serves a hub's dashboard: a real collector.Fleet following
// agents in this process (each vigil's stream hub behind vigil's own HTTP
// server on loopback) that send hosts' samples every second, each host at
// its own phase. It returns when the hub has heard from every agent and
// a few seconds of history are in.
func serveFleetPage(ctx context.Context, hosts, agents int) (base string, pageBytes int, stop func(), err error) {
	var servers []*http.Server
	stop = func() {
		for _, s := range servers {
			s.Close()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	hubs := make([]*stream.Hub, agents)
	var ups []collector.UpstreamOptions
	for a := range agents {
		hubs[a] = stream.NewHub(stream.HubOptions{FirstID: 1})
		go hubs[a].Run(ctx)
		web := dashboard.New(dashboard.Options{Hub: hubs[a], Store: collector.NewStore(time.Minute, time.Second), Interval: time.Second})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", 0, stop, err
		}
		srv := &http.Server{Handler: web}
		srv.RegisterOnShutdown(hubs[a].Close)
		servers = append(servers, srv)
		go srv.Serve(ln)
		ups = append(ups, collector.UpstreamOptions{URL: "http://" + ln.Addr().String(), Name: fmt.Sprintf("agent-%04d", a),
			Labels: map[string]string{"role": []string{"web", "db", "cache", "batch"}[a%4], "dc": []string{"fra", "ams", "iad"}[a%3]}})
	}
	go publishHosts(ctx, hubs, hosts)

	hub := stream.NewHub(stream.HubOptions{Queue: 16384})
	store := collector.NewStore(10*time.Minute, time.Second)
	sched := &collector.Scheduler{Store: store, Hub: hub, Interval: time.Second}
	fleet := &collector.Fleet{Store: store, Hub: hub, Scheduler: sched, Upstreams: ups}
	go hub.Run(ctx)
	go sched.Run(ctx)
	go fleet.Run(ctx)
	web := dashboard.New(dashboard.Options{Hub: hub, Store: store, Fleet: fleet, Interval: time.Second, Version: "bench"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", 0, stop, err
	}
	srv := &http.Server{Handler: web}
	srv.RegisterOnShutdown(hub.Close)
	servers = append(servers, srv)
	go srv.Serve(ln)
	base = "http://" + ln.Addr().String()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		heard := 0
		for _, u := range fleet.Status() {
			heard += len(u.Hosts)
		}
		if heard == hosts {
			break
		}
		if time.Now().After(deadline) {
			return "", 0, stop, fmt.Errorf("the hub heard of %d hosts of %d in 2 minutes", heard, hosts)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(5 * time.Second) // some history for the sparklines
	resp, err := http.Get(base + "/")
	if err != nil {
		return "", 0, stop, err
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return base, len(page), stop, nil
}

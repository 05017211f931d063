package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// probes runs the real vigil binary probing many loopback targets every
// second, and reports its CPU use and memory beside the same binary with
// no services. The targets live in this process, so their cost is not
// counted.
func probes(args []string) error {
	fs := flag.NewFlagSet("probes", flag.ExitOnError)
	targets := fs.Int("targets", 100, "services, each with one probed target")
	warm := fs.Duration("warm", 10*time.Second, "time after start before measuring")
	measure := fs.Duration("measure", 30*time.Second, "measurement window")
	fs.Parse(args)
	if *targets < 1 || *targets > 2000 {
		return fmt.Errorf("-targets %d: want 1 to 2000", *targets)
	}
	dir, err := os.MkdirTemp("", "vigil-probes")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "vigil")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build vigil (run from the repository root): %w", err)
	}

	var cfg strings.Builder
	cfg.WriteString("services:\n")
	for i := range *targets {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"status":"ok"}`)
		})}
		go srv.Serve(ln)
		defer srv.Close()
		fmt.Fprintf(&cfg, "  - name: target-%03d\n    probe:\n      url: http://%s/healthz\n      json_field: status\n      json_equals: ok\n", i, ln.Addr())
	}
	cfgFile := filepath.Join(dir, "vigil.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg.String()), 0o600); err != nil {
		return err
	}
	run := func(label string, extra ...string) error {
		cmd := exec.Command(bin, append([]string{"--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--log-level", "error"}, extra...)...)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		p := &proc{cmd: cmd}
		defer p.stop()
		time.Sleep(*warm)
		cpu0, t0 := p.cpuSeconds(), time.Now()
		var peak float64
		for time.Since(t0) < *measure {
			time.Sleep(time.Second)
			peak = max(peak, p.rssBytes())
		}
		cpu1, t1 := p.cpuSeconds(), time.Now()
		fmt.Printf("| %s | %.2f%% of one core | %.1f MiB (peak %.1f MiB) | %s |\n", label,
			100*(cpu1-cpu0)/t1.Sub(t0).Seconds(), p.rssBytes()/(1<<20), peak/(1<<20), *measure)
		return nil
	}
	if err := run("vigil, host source only"); err != nil {
		return err
	}
	return run(fmt.Sprintf("vigil, host source + %d probes a second", *targets), "--config", cfgFile)
}

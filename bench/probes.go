package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
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
	dir, bin, err := buildVigil()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

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
	if err := runVigil("vigil, host source only", bin, dir, *warm, *measure); err != nil {
		return err
	}
	return runVigil(fmt.Sprintf("vigil, host source + %d probes a second", *targets), bin, dir, *warm, *measure, "--config", cfgFile)
}

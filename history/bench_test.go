package history

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"vigil/collector"
)

// hostLike returns a source's sample at each call: n metrics as a host
// reports them — a quarter percents that wander, in three decimals, a
// quarter byte rates, whole, a quarter sizes that hardly change, a
// quarter counts and clocks that go up.
func hostLike(seed uint64, n int) func() map[string]float64 {
	rng := rand.New(rand.NewPCG(seed, 11))
	vals := make([]float64, n)
	for i := range vals {
		vals[i] = 100 * rng.Float64()
	}
	return func() map[string]float64 {
		m := make(map[string]float64, n)
		for i := range vals {
			switch i % 4 {
			case 0:
				vals[i] = min(100, max(0, vals[i]+rng.NormFloat64()))
				m[fmt.Sprintf("cpu.percent{core=%d}", i)] = math.Round(vals[i]*1000) / 1000
			case 1:
				m[fmt.Sprintf("net.rx_bytes_per_sec{iface=eth%d}", i)] = math.Round(1e5 * rng.ExpFloat64())
			case 2:
				if rng.IntN(600) == 0 {
					vals[i]++
				}
				m[fmt.Sprintf("fs.used_bytes{mount=/m%d}", i)] = math.Round(vals[i] * 1e9)
			case 3:
				vals[i]++
				m[fmt.Sprintf("host.uptime_seconds{n=%d}", i)] = vals[i]
			}
		}
		return m
	}
}

// feed records seconds of 1 Hz samples of sources sources of n metrics
// each, from t, flushing every first-tier step.
func feed(b testing.TB, h *DB, sources, n int, t time.Time, seconds int, ck *clock) {
	gens := make([]func() map[string]float64, sources)
	for i := range gens {
		gens[i] = hostLike(uint64(i), n)
	}
	for s := range seconds {
		at := t.Add(time.Duration(s) * time.Second)
		for i, g := range gens {
			h.Record(collector.Sample{Source: fmt.Sprintf("svc/s%03d", i), Time: at, Metrics: collector.MetricsOf(g())})
		}
		if (s+1)%10 == 0 {
			ck.set(at)
			if err := h.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkWrite is the history's cost for each 10 seconds of 1 Hz
// samples — rolling them up and writing the steps — of one host of forty
// metrics, and of a hundred services of fifteen: CPU a 10-second step
// (ns/op), and the bytes the database and its log grew by and those its
// rows take, a point.
func BenchmarkWrite(b *testing.B) {
	for _, tc := range []struct {
		name             string
		sources, metrics int
	}{{"host", 1, 40}, {"services=100", 100, 15}} {
		b.Run(tc.name, func(b *testing.B) {
			dir := b.TempDir()
			ck := &clock{t: t0}
			h, err := Open(context.Background(), Options{Path: filepath.Join(dir, "history.db"), Now: ck.now})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			feed(b, h, tc.sources, tc.metrics, t0, 600, ck) // warm: the numbers and the first rows
			before := dirSize(dir)
			start := t0.Add(600 * time.Second)
			b.ResetTimer()
			for i := range b.N {
				feed(b, h, tc.sources, tc.metrics, start.Add(time.Duration(i)*10*time.Second), 10, ck)
			}
			b.StopTimer()
			points := float64(b.N * 10 * tc.sources * tc.metrics)
			b.ReportMetric(float64(dirSize(dir)-before)/points, "disk-B/sample-point")
		})
	}
}

// BenchmarkDisk fills a day of one host of forty metrics at 1 Hz and
// reports what its steps take on disk: bytes a step-point in each tier
// (a metric's aggregates of one step, the row's share of the database
// file after a checkpoint), and so a series' steady size with the default
// tiers (a day at 10 s, a week at 1 min, 90 days at 10 min).
func BenchmarkDisk(b *testing.B) {
	for range b.N {
		dir := b.TempDir()
		ck := &clock{t: t0}
		path := filepath.Join(dir, "history.db")
		h, err := Open(context.Background(), Options{Path: path, Now: ck.now})
		if err != nil {
			b.Fatal(err)
		}
		feed(b, h, 1, 40, t0, 86400, ck)
		h.mu.Lock()
		h.closeStale(t0.Add(48 * time.Hour))
		h.mu.Unlock()
		if err := h.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		if _, err := h.sql.db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
			b.Fatal(err)
		}
		var file int64
		if fi, err := os.Stat(path); err == nil {
			file = fi.Size()
		}
		var rows, data [3]float64
		q, err := h.sql.db.Query("SELECT tier, count(*), sum(length(data)) FROM steps GROUP BY tier")
		if err != nil {
			b.Fatal(err)
		}
		for q.Next() {
			var k int
			var n, d float64
			q.Scan(&k, &n, &d)
			rows[k], data[k] = n, d
		}
		q.Close()
		h.Close()
		// The file's bytes beyond the blobs (keys, b-tree pages, free
		// space) shared out by row.
		over := (float64(file) - data[0] - data[1] - data[2]) / (rows[0] + rows[1] + rows[2])
		perPoint := func(k int) float64 { return (data[k]/rows[k] + over) / 40 }
		b.ReportMetric(perPoint(0), "B/point-10s")
		b.ReportMetric(perPoint(1), "B/point-1m")
		b.ReportMetric(perPoint(2), "B/point-10m")
		steady := 8640*perPoint(0) + 7*1440*perPoint(1) + 90*144*perPoint(2)
		b.ReportMetric(steady/1e6, "MB/series-steady")
		b.ReportMetric((8640*perPoint(0)+1440*perPoint(1)+144*perPoint(2))/1e6, "MB/series-day")
	}
}

// BenchmarkQuery7Days is a week of ten series of one source at 1 min —
// 10,080 points each — read from the history; beside it, the same rows
// only read from SQLite, undecoded: what the format adds to the
// database's own cost.
func BenchmarkQuery7Days(b *testing.B) {
	ck := &clock{t: t0.Add(7 * 24 * time.Hour)}
	h, err := Open(context.Background(), Options{Path: filepath.Join(b.TempDir(), "history.db"), Now: ck.now})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	gen := hostLike(1, 40)
	var rows []row
	for i := range 7 * 24 * 60 {
		r := row{tier: 1, source: "host/a", start: t0.Add(time.Duration(i) * time.Minute).UnixMilli()}
		aggs := map[string]*agg{}
		for range 6 { // a minute of six 10-second means
			for name, v := range gen() {
				if aggs[name] == nil {
					aggs[name] = &agg{}
				}
				aggs[name].add(v)
			}
		}
		for name, a := range aggs {
			r.names, r.aggs = append(r.names, name), append(r.aggs, *a)
		}
		rows = append(rows, r)
	}
	if err := h.sql.write(context.Background(), rows, nil); err != nil {
		b.Fatal(err)
	}
	var want []string
	for name := range gen() {
		if len(want) < 10 {
			want = append(want, name)
		}
	}
	from, to := t0, t0.Add(7*24*time.Hour-time.Minute)
	b.Run("vigil", func(b *testing.B) {
		for b.Loop() {
			res, err := h.Query(context.Background(), "host/a", want, from, to, time.Minute)
			if err != nil || len(res.Series[want[9]]) != 10080 {
				b.Fatalf("%v, %d points", err, len(res.Series[want[9]]))
			}
		}
	})
	b.Run("rows-only", func(b *testing.B) {
		for b.Loop() {
			q, err := h.sql.db.Query("SELECT t, open, data FROM steps WHERE tier = 1 AND source = 1 AND t >= ? AND t < ? ORDER BY t", from.UnixMilli(), to.UnixMilli()+1)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for q.Next() {
				var t, open int64
				var data []byte
				q.Scan(&t, &open, &data)
				n++
			}
			q.Close()
			if n != 10080 {
				b.Fatalf("%d rows", n)
			}
		}
	})
}

func dirSize(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// BenchmarkHub is the history's cost on a hub of a thousand hosts of 36
// metrics (Record, and the writes and checkpoints as Run makes them):
// each op is 10 seconds of 1 Hz samples, 36,000 sample points a second,
// the samples made before the timer starts; reported a sample, with the
// most the rows waiting for a write held. Run it a whole number of
// minutes: -benchtime 60x.
func BenchmarkHub(b *testing.B) {
	const sources, metrics = 1000, 36
	ck := &clock{t: t0}
	h, err := Open(context.Background(), Options{Path: filepath.Join(b.TempDir(), "history.db"), Now: ck.now})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	samples := make([]collector.Sample, sources)
	for i := range samples {
		samples[i] = collector.Sample{Source: fmt.Sprintf("host/h%04d", i), Metrics: collector.MetricsOf(hostLike(uint64(i), metrics)())}
	}
	second := func(at time.Time) {
		for i := range samples {
			samples[i].Time = at
			h.Record(samples[i])
		}
	}
	at := t0
	for range 60 { // warm: the steps of each tier open, the statements made
		second(at)
		at = at.Add(time.Second)
	}
	ck.set(at)
	if err := h.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	var most int64 // the bytes of the rows waiting before a write, at most
	b.ResetTimer()
	for i := range b.N {
		for range 10 {
			second(at)
			at = at.Add(time.Second)
		}
		ck.set(at)
		if (i+1)%int(DefaultWriteEvery/(10*time.Second)) == 0 { // as Run does, once a minute
			h.mu.Lock()
			held := int64(cap(h.pending)) * int64(unsafe.Sizeof(row{}))
			for _, r := range h.pending {
				held += int64(cap(r.data))
			}
			h.mu.Unlock()
			most = max(most, held)
			if err := h.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		if (i+1)%int(checkpointEvery/(10*time.Second)) == 0 {
			if err := h.sql.checkpoint(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10*sources), "ns/sample")
	b.ReportMetric(float64(most)/1e6, "MB-waiting")
}

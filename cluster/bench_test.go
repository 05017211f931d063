package cluster

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vigil/alerts"
	"vigil/internal/vigiltest"
)

// BenchmarkSharedDeliveryThroughput sends deliveries through the outbox
// replicas share in NATS (an in-process server, file storage) to local
// receivers that answer at once: publish, pull, sign, POST, record in
// the deliveries bucket, acknowledge. Each transition goes to every
// receiver; one or two replicas send. alerts.BenchmarkDeliveryThroughput
// is the same through the SQLite outbox.
func BenchmarkSharedDeliveryThroughput(b *testing.B) {
	for _, tc := range []struct{ replicas, receivers int }{{1, 1}, {1, 8}, {2, 8}} {
		b.Run(fmt.Sprintf("replicas=%d/receivers=%d", tc.replicas, tc.receivers), func(b *testing.B) {
			n := vigiltest.StartNATS(b)
			var got, dup atomic.Int64
			var seen sync.Map
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got.Add(1)
				if _, again := seen.LoadOrStore(r.Header.Get("webhook-id"), true); again {
					dup.Add(1)
				}
			}))
			defer srv.Close()
			var conf []alerts.ConfiguredReceiver
			for i := range tc.receivers {
				conf = append(conf, alerts.ConfiguredReceiver{Name: fmt.Sprint("r", i), URL: srv.URL, Secret: alerts.NewSecret()})
			}
			var ws []*Webhooks
			for range tc.replicas {
				w, stop := runWebhooks(b, n, WebhookOptions{Configured: conf})
				defer stop()
				ws = append(ws, w)
			}
			ctx := context.Background()
			deadline := time.Now().Add(time.Minute)
			for _, w := range ws {
				for {
					rs, _ := w.ListReceivers(ctx)
					if len(rs) == tc.receivers {
						break
					}
					if time.Now().After(deadline) {
						b.Fatal("receivers not saved")
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			episode := time.Now()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if err := ws[0].Publish(ctx, []alerts.Transition{transition(fmt.Sprint("R", i), alerts.StateFiring, episode)}); err != nil {
					b.Fatal(err)
				}
			}
			want := int64(b.N * tc.receivers)
			for got.Load() < want && time.Now().Before(deadline.Add(time.Minute)) {
				time.Sleep(time.Millisecond)
			}
			if got.Load() < want || dup.Load() > 0 {
				b.Fatalf("%d of %d deliveries, %d of them again", got.Load(), want, dup.Load())
			}
			b.ReportMetric(float64(want)/time.Since(start).Seconds(), "deliveries/s")
		})
	}
}

// Package collector is the front of vigil's data flow: it samples sources
// and keeps their recent history.
//
//	Source.Collect (every interval, per source, with a timeout)
//	  -> Sample -> Store (per source: its samples' times, and a column of
//	     values per metric, compressed: columns.go, values.go)
//	  -> stream.Hub.Publish (a "sample" event; "source" events when a
//	     source fails or recovers)
//
// A Source is anything with a name that can be asked for a set of metric
// values: the host (host*.go, a file per subsystem, every gopsutil call in
// them), a service probed and scraped over HTTP (service.go, probe.go,
// scrape.go, expfmt.go), the demo services. A Scheduler runs each source on
// its own goroutine, so a source that hangs or fails delays nobody else;
// failures become "source" events and metrics rather than gaps. Text from a
// target is bounded and credentials in URLs are redacted (RedactURL) before
// either reaches an event, a log line or a metric name.
//
// On a hub, a Fleet (fleet.go, upstream.go) follows other vigils'
// event streams: their hosts come in as samples of their own, their
// services are merged by counts and latency buckets into one source each
// (fleet_service.go), and each connection is a source, upstream/<name>.
//
// The Store keeps the retention of every series in memory, in chunks that
// are dropped whole, and is what the dashboard's pages and the alert rules
// read (decoding only the chunks a window covers); the Hub is how samples
// leave this package. It imports vigil's stream package
// and no other.
package collector

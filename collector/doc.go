// Package collector is the front of vigil's data flow: it samples sources,
// keeps their recent history, and fans every sample out to whoever listens.
//
//	Source.Collect (every interval, per source, with a timeout)
//	  -> Sample -> Store (a fixed-size Ring per series)
//	  -> Hub.Publish (assigns the event id, keeps a replay window, fans out without blocking)
//	       -> the transports in package dashboard, and package alerts
//
// A Source is anything with a name that can be asked for a set of metric values
// (see Host). A Scheduler runs each source on its own goroutine, so a source
// that hangs or fails delays nobody else; failures become "source" events and
// metrics rather than gaps.
//
// The Hub is the only way events leave this package. It encodes every event
// once, as the Server-Sent Events frame a browser or curl receives, and hands
// subscribers pointers to that frame; a subscriber that cannot keep up is
// disconnected and resumes from the replay window with its last event id.
//
// This package imports none of vigil's other packages.
package collector

// Package stream is the middle of vigil's data flow: every event the
// sources, the alert rules and the fleet produce passes through one Hub on
// its way to every client, whatever the transport.
//
//	collector.Scheduler, alerts.Evaluator
//	  -> Hub.Publish: the Log gives the event its id (in this process: a
//	     counter and a replay window) and the event is encoded once
//	  -> every Subscriber's bounded queue, never waiting for one
//	       -> the transports in package dashboard (SSE, NDJSON, long
//	          polling, WebSocket, gRPC/Connect), all from the same events
//	          and ids
//
// A client resumes from the id of the last event it got (Cursor). What it
// missed comes from the Log's window; when the window no longer has it (the
// client is from an earlier run, or was away too long), it gets one reset
// event instead of a silent gap: the newest state of every source and
// alert, and — from the History, a journal of alert and source events on
// disk — every transition it missed, in order.
//
// Filters select events by source glob and type; ids are decimal numbers,
// at most 2^53-1 so JavaScript reads them exactly, and increase across
// restarts (IDFile keeps the floor). Clip bounds text from outside before it
// goes into an event.
//
// This package imports none of vigil's other packages.
package stream

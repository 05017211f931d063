// Package alerts is the back of vigil's data flow: rules over the ring
// buffer, alert states, and webhooks that a crash cannot lose.
//
//	Evaluator: the rules over collector's ring, every interval; each
//	  (rule, source, metric) moves inactive → pending → firing → resolved,
//	  or to nodata when its source goes silent (rule.go, evaluator.go)
//	  -> SaveTransitions (the StateStore, DB in store.go): the new states
//	     and, in the same transaction, the webhook event of each; then an
//	     "alert" event on the hub
//	  -> the outbox in vigil.db: events, then each receiver's deliveries
//	     from its own cursor (outbox.go; bodies rendered in webhook.go)
//	  -> Dispatcher: claims what is due receiver by receiver, signs
//	     (Standard Webhooks), sends, retries with backoff, and keeps a
//	     breaker per receiver so a dead one delays nobody (dispatcher.go,
//	     ssrf.go for where it may connect)
//	  -> a Receiver: written in the config file, or subscribed through the
//	     API
//
// On replicas the outbox is shared in NATS JetStream instead
// (cluster.Webhooks, an Outbox sending with a Sender and Backoff, the
// pieces Dispatcher sends with), and DB keeps the states' journal
// (WithoutWebhooks).
//
// Receivers is the service behind the receivers API: receivers that
// subscribe themselves and prove it by echoing a challenge, their
// secrets, test events and delivery history (receivers.go). Ack marks an
// active alert as being handled: saved and announced like a transition,
// with no webhook.
package alerts

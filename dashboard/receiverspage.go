package dashboard

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"vigil/alerts"
	"vigil/templates"
)

// handleReceiversPage lists the receivers, with their last delivery and
// a "Send test" button for who may write.
func (s *Server) handleReceiversPage(w http.ResponseWriter, r *http.Request) {
	rcvs, err := s.opts.Receivers.List(r.Context())
	if err != nil {
		status, msg := statusOf(err)
		s.renderStatus(w, r, status, templates.NoticePage(s.page(r, "Receivers · vigil", 0, templates.ViewState{}, ""), msg, "/"))
		return
	}
	slices.SortFunc(rcvs, func(a, b alerts.Receiver) int {
		return cmp.Or(cmp.Compare(a.Origin, b.Origin), cmp.Compare(a.ID, b.ID)) // the file's first
	})
	p := s.page(r, "Receivers · vigil", s.opts.Hub.LastID(), templates.ViewState{}, "type=alert")
	rows := make([]templates.ReceiverRow, 0, len(rcvs))
	var sent string
	whole := s.mayReadSecrets(r) // a writer sees URLs whole, as in the API
	for _, rc := range rcvs {
		target := receiverTarget(rc)
		if whole && rc.URL != "" && rc.Type != alerts.TypeEmail && rc.Type != alerts.TypeTelegram {
			target = rc.URL
		}
		row := templates.ReceiverRow{ID: rc.ID, Name: receiverName(rc), Type: cmp.Or(rc.Type, alerts.TypeWebhook), Target: target,
			Match: strings.Join(rc.Match, ", "), Status: rc.Status, Testable: rc.Status == alerts.ReceiverActive}
		if ds, err := s.opts.Receivers.Deliveries(r.Context(), rc.ID, 1); err == nil && len(ds) > 0 {
			d := ds[0]
			row.Last = &templates.DeliveryView{ID: d.ID, Event: d.EventType, State: d.State, At: d.UpdatedAt, Error: d.LastError, Attempts: len(d.Attempts)}
			if d.State == alerts.DeliveryQueued {
				row.Last.Next = d.NextAttemptAt
			}
			if n := len(d.Attempts); n > 0 && row.Last.Error == "" {
				row.Last.Error = d.Attempts[n-1].Error // a queued retry says why it waits
			}
		}
		if rc.ID == r.URL.Query().Get("sent") {
			sent = row.Name
		}
		rows = append(rows, row)
	}
	s.render(w, r, templates.ReceiversPage(p, rows, sent))
}

// receiverName is how the page names a receiver: its name in the file,
// or its description.
func receiverName(r alerts.Receiver) string {
	if name, ok := strings.CutPrefix(r.ID, "cfg-"); ok && r.Origin == "config" {
		return name
	}
	return cmp.Or(r.Description, r.ID)
}

// receiverTarget is where a receiver's messages go, without what may be a
// credential (the page is a read).
func receiverTarget(r alerts.Receiver) string {
	switch r.Type {
	case alerts.TypeEmail:
		return strings.Join(r.To, ", ") + " via " + redactTarget(r.URL)
	case alerts.TypeTelegram:
		return "chat " + r.ChatID
	case alerts.TypePagerDuty:
		if r.URL == "" {
			return alerts.PagerDutyAPI
		}
	}
	if r.URL == "" {
		return ""
	}
	return redactTarget(r.URL)
}

// pageTest sends a receiver a test message (a button, as pageWrite
// runs it), and goes back to the list, which says so.
func (s *Server) pageTest(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if _, err := s.opts.Receivers.Test(r.Context(), id); err != nil {
		return "", err
	}
	s.opts.Logger.Info("test message queued from the page", "receiver", id, "by", s.actor(r))
	return "/receivers?sent=" + url.QueryEscape(id), nil
}

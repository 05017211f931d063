package alerts

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Grouping: a receiver with a GroupWait holds each firing alert's message
// that long, and sends it together with the others that fired meanwhile
// — of the same GroupBy labels, all of them without GroupBy — as one
// message, as Alertmanager's group_wait does: a rack that loses power is
// one page, not forty. Each alert keeps its own delivery in the outbox
// (its order, its resolution, its repeats go on as without grouping);
// the deliveries due together are sent as one request, whose outcome
// each of them records. Resolutions and repeats are sent one by one.

// Bounds of grouping.
const (
	MaxGroupWait = 10 * time.Minute
	MaxGroup     = 100 // alerts in one message; more go in the next
)

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// checkGroup says what is wrong with a receiver's grouping.
func checkGroup(r Receiver) error {
	var errs []error
	switch {
	case r.GroupWait < 0 || time.Duration(r.GroupWait) > MaxGroupWait:
		errs = append(errs, fmt.Errorf("group_wait: %s is not between 0s and %s", time.Duration(r.GroupWait), MaxGroupWait))
	case r.GroupWait > 0 && r.Type == TypePagerDuty:
		errs = append(errs, errors.New("group_wait: PagerDuty keeps one incident per alert (its dedup_key); group them there"))
	case r.GroupWait > 0 && r.Type == TypeWebPush:
		errs = append(errs, errors.New("group_wait: a browser shows one notification per alert"))
	case len(r.GroupBy) > 0 && r.GroupWait == 0:
		errs = append(errs, errors.New("group_by: groups only with a group_wait, such as 30s"))
	}
	if len(r.GroupBy) > maxMatchers {
		errs = append(errs, fmt.Errorf("group_by: at most %d labels", maxMatchers))
	}
	for i, l := range r.GroupBy {
		switch {
		case !labelName.MatchString(l):
			errs = append(errs, fmt.Errorf("group_by: %q is not a label name", l))
		case slices.Contains(r.GroupBy[:i], l):
			errs = append(errs, fmt.Errorf("group_by: %q twice", l))
		}
	}
	return errors.Join(errs...)
}

// groups reports whether a receiver sends a delivery of an event type
// grouped: its firings, when it has a GroupWait.
func (r Receiver) groups(typ string) bool { return r.GroupWait > 0 && typ == EventFiring }

// GroupKey is the key of an alert's group at a receiver: its GroupBy
// labels and their values, as Alertmanager writes a group's labels.
func GroupKey(r Receiver, labels map[string]string) string {
	parts := make([]string, 0, len(r.GroupBy))
	for _, l := range slices.Sorted(slices.Values(r.GroupBy)) {
		parts = append(parts, l+"="+strconv.Quote(labels[l]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// payloadLabels are the labels an alert's webhook body was matched on,
// read back from it in either format.
func payloadLabels(body []byte) map[string]string {
	var b struct {
		Data   *standardData `json:"data"`
		Alerts []amAlert     `json:"alerts"`
	}
	json.Unmarshal(body, &b)
	switch {
	case b.Data != nil:
		return MatchLabels(Alert{Rule: b.Data.Rule, Severity: b.Data.Severity, Source: b.Data.Source, Metric: b.Data.Metric, Labels: b.Data.Labels})
	case len(b.Alerts) > 0:
		return b.Alerts[0].Labels
	}
	return map[string]string{}
}

// groupedBody is the standard body of a group: the first alert in data,
// as a single alert's, and every alert of the group in alerts.
type groupedBody struct {
	standardBody
	GroupKey string         `json:"group_key"`
	Alerts   []standardData `json:"alerts"`
}

// GroupPayload makes one body of the firing bodies of a group, in their
// format: the standard one with every alert in "alerts", or
// Alertmanager's with its alerts, group labels and common labels.
func GroupPayload(r Receiver, bodies [][]byte) ([]byte, error) {
	if r.Format == FormatAlertmanager {
		var out amBody
		for i, b := range bodies {
			var one amBody
			if err := json.Unmarshal(b, &one); err != nil {
				return nil, fmt.Errorf("read a grouped webhook: %w", err)
			}
			if i == 0 {
				out = one
				out.Alerts = nil
				out.CommonLabels, out.CommonAnnotations = maps.Clone(one.CommonLabels), maps.Clone(one.CommonAnnotations)
			}
			out.Alerts = append(out.Alerts, one.Alerts...)
			for _, a := range one.Alerts {
				keepCommon(out.CommonLabels, a.Labels)
				keepCommon(out.CommonAnnotations, a.Annotations)
			}
		}
		out.GroupLabels = map[string]string{}
		for _, l := range r.GroupBy {
			out.GroupLabels[l] = out.CommonLabels[l]
		}
		out.GroupKey = "{}:" + GroupKey(r, out.CommonLabels)
		return marshal(out)
	}
	var out groupedBody
	for i, b := range bodies {
		var one standardBody
		if err := json.Unmarshal(b, &one); err != nil {
			return nil, fmt.Errorf("read a grouped webhook: %w", err)
		}
		if i == 0 {
			out.standardBody = one
		}
		if one.Timestamp.After(out.Timestamp) {
			out.Timestamp = one.Timestamp
		}
		out.Alerts = append(out.Alerts, one.Data)
	}
	out.GroupKey = GroupKey(r, payloadLabels(bodies[0]))
	return marshal(out)
}

// keepCommon removes from common what other does not share.
func keepCommon(common, other map[string]string) {
	for k, v := range common {
		if other[k] != v {
			delete(common, k)
		}
	}
}

// MemberPayload is the body of the i-th alert of a group's body, as a
// group of one: for sending one alert of a group again alone.
func MemberPayload(r Receiver, group []byte, i int) ([]byte, error) {
	if r.Format == FormatAlertmanager {
		var b amBody
		if err := json.Unmarshal(group, &b); err != nil || i >= len(b.Alerts) {
			return nil, fmt.Errorf("alert %d of a group: not in its body", i)
		}
		b.Alerts = b.Alerts[i : i+1]
		b.CommonLabels, b.CommonAnnotations = b.Alerts[0].Labels, b.Alerts[0].Annotations
		b.Status = b.Alerts[0].Status
		return marshal(b)
	}
	var b groupedBody
	if err := json.Unmarshal(group, &b); err != nil || i >= len(b.Alerts) {
		return nil, fmt.Errorf("alert %d of a group: not in its body", i)
	}
	b.Data, b.Alerts = b.Alerts[i], b.Alerts[i:i+1]
	return marshal(b)
}

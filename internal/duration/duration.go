// Package duration reads durations as vigil's configuration and API take
// them: Go's (500ms, 1h30m) and, as Prometheus writes them, days, weeks
// and years (7d, 1w, 1d12h).
package duration

import (
	"time"

	"github.com/prometheus/common/model"
)

// Parse reads a duration; the error is Go's when neither form reads it.
func Parse(s string) (time.Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		if d, merr := model.ParseDuration(s); merr == nil {
			return time.Duration(d), nil
		}
	}
	return v, err
}

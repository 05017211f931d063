// Package static holds the dashboard's script, styles and icon, embedded
// in the binary: nothing is fetched from anywhere else at run time.
package static

import "embed"

// FS holds app.js, charts.js, sw.js (the service worker that shows web
// pushes), app.css, favicon.svg, and under vendor/ the
// charting library (uPlot, with its licence).
//
//go:embed app.js charts.js sw.js app.css favicon.svg vendor
var FS embed.FS

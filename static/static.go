// Package static holds the dashboard's script, styles and icon, embedded
// in the binary: nothing is fetched from anywhere else at run time.
package static

import "embed"

// FS holds app.js, charts.js, app.css, favicon.svg, and under vendor/ the
// charting library (uPlot, with its licence).
//
//go:embed app.js charts.js app.css favicon.svg vendor
var FS embed.FS

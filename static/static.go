// Package static holds the dashboard's script, styles and icon, embedded
// in the binary: nothing is fetched from anywhere else at run time.
package static

import "embed"

// FS holds app.js, app.css and favicon.svg.
//
//go:embed app.js app.css favicon.svg
var FS embed.FS

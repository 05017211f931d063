package tail

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"vigil/stream"
)

const tailUsage = `vigil tail — follow a vigil's event stream, one line per event

Usage:
  vigil tail [flags] [URL]

URL is the vigil to follow (default http://127.0.0.1:8080). After a
disconnect, tail reconnects with Last-Event-ID and misses nothing the
server still holds. Ctrl-C stops it.

Flags:
`

// Env is what Command needs of the process.
type Env struct {
	Stdout, Stderr io.Writer
	Usage          io.Writer // where --help writes the usage
	Getenv         func(string) string
	DefaultURL     string // the vigil to follow when no URL is given
}

// Command runs "vigil tail [flags] [URL]": it parses the flags and follows
// the stream until ctx is done. A bad flag, or an answer retrying cannot
// fix, is an error; --help is flag.ErrHelp, with the usage on stdout.
func Command(ctx context.Context, args []string, e Env) error {
	fs := flag.NewFlagSet("vigil tail", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // a bad flag is one error, returned; not the usage too
	fs.Usage = func() {
		fmt.Fprint(e.Usage, tailUsage)
		fs.SetOutput(e.Usage)
		fs.PrintDefaults()
	}
	parse := func(args []string) error {
		err := fs.Parse(args)
		if err != nil && !errors.Is(err, flag.ErrHelp) {
			err = fmt.Errorf("%w (vigil tail --help lists the flags)", err)
		}
		return err
	}
	var sources, types list
	fs.Var(&sources, "source", "only sources matching this glob (repeatable, or comma-separated), e.g. host/* or service/api")
	fs.Var(&types, "type", "only these event types: sample, source, alert, reset (repeatable, or comma-separated)")
	from := fs.String("from", "", "start after this event id instead of now (replays what the server still holds)")
	asJSON := fs.Bool("json", false, "print each event's JSON, one per line (NDJSON), for jq and scripts")
	color := fs.String("color", "auto", "colour the output: auto (when writing to a terminal and NO_COLOR is unset), always or never")
	quiet := fs.Bool("quiet", false, "do not report disconnects and reconnects on stderr")
	if err := parse(args); err != nil {
		return err
	}
	target := e.DefaultURL
	if rest := fs.Args(); len(rest) > 0 {
		target = rest[0]
		if err := parse(rest[1:]); err != nil { // flags may follow the URL
			return err
		}
		if len(fs.Args()) > 0 {
			return fmt.Errorf("tail takes one URL, got %q too", fs.Args())
		}
	}
	var useColor bool
	switch *color {
	case "always":
		useColor = true
	case "never":
	case "auto":
		useColor = isTerminal(e.Stdout) && e.Getenv("NO_COLOR") == ""
	default:
		return fmt.Errorf("bad --color %q: want auto, always or never", *color)
	}
	if *from != "" {
		if _, err := stream.ParseID(*from); err != nil {
			return fmt.Errorf("bad --from %q: want an event id (a decimal number)", *from)
		}
	}
	o := Options{URL: target, Sources: sources, Types: types, From: *from,
		JSON: *asJSON, Color: useColor, Out: e.Stdout, Status: e.Stderr}
	if *quiet {
		o.Status = nil
	}
	return Follow(ctx, o)
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// list is a repeatable flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

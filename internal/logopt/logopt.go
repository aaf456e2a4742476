// Package logopt is how ciel's library packages take a logger: silent by
// default (Discard), and a WithLogger option that refuses nil (Set), so
// that every package makes its default logger the same way; and how the
// commands that log build their one logger from --log-format and
// --log-level (New).
package logopt

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// ErrNil is the error of a WithLogger option given nil.
var ErrNil = errors.New("logger must not be nil")

// Discard returns the logger a library uses when it is given none: it
// drops every record.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Set is the body of every WithLogger option: it stores l in *dst, and
// refuses nil with ErrNil.
//
//	func WithLogger(l *slog.Logger) Option {
//		return func(o *options) error { return logopt.Set(&o.logger, l) }
//	}
func Set(dst **slog.Logger, l *slog.Logger) error {
	if l == nil {
		return ErrNil
	}
	*dst = l
	return nil
}

// Or returns l, or Discard when l is nil (for a logger in a Config struct).
func Or(l *slog.Logger) *slog.Logger {
	if l == nil {
		return Discard()
	}
	return l
}

// New returns the logger of a command's --log-format (json or text) and
// --log-level (debug, info, warn or error, as slog.Level reads them),
// writing to w; an unknown format or level is an error naming its flag.
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	h := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, h)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, h)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", format)
}

// Flags are the --log-format and --log-level of a command that logs: the
// one place their names, defaults and help are written.
type Flags struct {
	Format, Level string
}

// stringVarer is what Register needs of a flag set (pflag's, as cobra
// gives it, and the standard library's both have it).
type stringVarer interface {
	StringVar(p *string, name, value, usage string)
}

// Register adds --log-format (default json) and --log-level (default info)
// to fs.
func (f *Flags) Register(fs stringVarer) {
	fs.StringVar(&f.Format, "log-format", "json", "log format: json or text")
	fs.StringVar(&f.Level, "log-level", "info", "log level: debug, info, warn or error")
}

// Logger is New of the flags' values, writing to w.
func (f *Flags) Logger(w io.Writer) (*slog.Logger, error) { return New(w, f.Format, f.Level) }

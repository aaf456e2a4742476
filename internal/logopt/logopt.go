// Package logopt is how ciel's library packages take a logger: silent by
// default (Discard), and a WithLogger option that refuses nil (Set), so
// that every package makes its default logger the same way; and how the
// commands that log build their one logger from --log-format (New).
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

// New returns the logger of a command's --log-format (json or text) at
// level, writing to w; an unknown format is an error.
func New(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	h := &slog.HandlerOptions{Level: level}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, h)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, h)), nil
	}
	return nil, fmt.Errorf("unknown log format %q: want json or text", format)
}

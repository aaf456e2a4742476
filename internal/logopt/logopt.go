// Package logopt is how ciel's library packages take a logger: silent by
// default (Discard), and a WithLogger option that refuses nil (Check), so
// that every package makes its default logger the same way and only cmd/
// configures output.
package logopt

import (
	"errors"
	"log/slog"
)

// ErrNil is the error of a WithLogger option given nil.
var ErrNil = errors.New("logger must not be nil")

// Discard returns the logger a library uses when it is given none: it
// drops every record.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Check validates a logger given to a WithLogger option: nil is ErrNil.
func Check(l *slog.Logger) error {
	if l == nil {
		return ErrNil
	}
	return nil
}

// Or returns l, or Discard when l is nil (for a logger in a Config struct).
func Or(l *slog.Logger) *slog.Logger {
	if l == nil {
		return Discard()
	}
	return l
}

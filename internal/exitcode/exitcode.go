// Package exitcode is the one exit-code scheme of ciel's commands (ciel,
// cel-eval, interceptor, reporter): a command's RunE returns an *Error to
// choose its process exit code, and main hands whatever RunE returned to
// Exit.
//
// Each command documents its own values (ciel: 0 success, 1 failed, 2
// usage; cel-eval: 0 true, 1 false, 2 error; interceptor and reporter: 0
// or 1); this package only carries them from RunE to os.Exit, and prints
// the error unless it was already reported (an Error without a cause).
// A main is one call to Main.
package exitcode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// The codes shared by every command; a command may give 1 and 2 a more
// precise meaning (cel-eval: 1 false, 2 any error) and documents it.
const (
	OK      = 0 // the command succeeded
	Failure = 1 // the operation was refused or failed
	Usage   = 2 // bad flags or arguments
)

// Error carries an exit code through cobra. Err is the cause, printed by
// Exit; nil when the command already reported on its output (Silent).
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an error that exits with code; err nil stays a silent exit.
func New(code int, err error) error {
	return &Error{Code: code, Err: err}
}

// Errorf returns an error that exits with code.
func Errorf(code int, format string, args ...any) error {
	return &Error{Code: code, Err: fmt.Errorf(format, args...)}
}

// Code maps a command's error to its exit code: OK for nil, the code of
// an *Error in the chain, else fallback.
func Code(err error, fallback int) int {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return fallback
}

// Is reports whether err carries exit code code.
func Is(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// Silent reports whether err was already reported on the command's
// output (an *Error without a cause): nothing more is printed.
func Silent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Err == nil
}

// Main runs a command's root as every ciel main does, and does not
// return: the command's context ends at SIGINT or SIGTERM, its error is
// reported on stderr as "name: error" (unless Silent), and the process
// exits with Code(err, fallback).
func Main(name string, root *cobra.Command, fallback int) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := root.ExecuteContext(ctx)
	stop()
	os.Exit(Report(os.Stderr, name, err, fallback))
}

// Report prints "name: err" on w unless err is nil or Silent, and returns
// the exit code (Code with fallback).
func Report(w io.Writer, name string, err error, fallback int) int {
	if err != nil && !Silent(err) {
		fmt.Fprintf(w, "%s: %v\n", name, err)
	}
	return Code(err, fallback)
}

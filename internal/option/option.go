// Package option helps write validated functional options
// (type Option func(*options) error): Check builds one from its condition
// and the field it sets, so that every WithX reads as one line and refuses
// a bad value the same way.
package option

import "errors"

// Check returns an option that applies set when ok, and fails with msg
// otherwise. Its result is assignable to a package's Option type:
//
//	func WithTimeout(d time.Duration) Option {
//		return option.Check(d > 0, "timeout must be positive", func(o *options) { o.timeout = d })
//	}
func Check[T any](ok bool, msg string, set func(*T)) func(*T) error {
	return func(o *T) error {
		if !ok {
			return errors.New(msg)
		}
		set(o)
		return nil
	}
}

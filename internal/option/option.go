// Package option helps write validated functional options
// (type Option func(*options) error): Check builds one from its condition
// and the field it sets, Err from the error a validator returned, so that
// every WithX reads as one line and refuses a bad value the same way.
package option

import "errors"

// Check returns an option that applies set when ok, and fails with msg
// otherwise. Its result is assignable to a package's Option type:
//
//	func WithTimeout(d time.Duration) Option {
//		return option.Check(d > 0, "timeout must be positive", func(o *options) { o.timeout = d })
//	}
func Check[T any](ok bool, msg string, set func(*T)) func(*T) error {
	var err error
	if !ok {
		err = errors.New(msg)
	}
	return Err(err, set)
}

// Err returns an option that applies set when err is nil, and fails with
// err otherwise, for a value checked by a validator that says why it is
// refused:
//
//	func WithRequirePlatforms(ps ...v1.Platform) Option {
//		return option.Err(platform.CheckRequired(ps...), func(o *options) { o.require = ps })
//	}
func Err[T any](err error, set func(*T)) func(*T) error {
	return func(o *T) error {
		if err != nil {
			return err
		}
		set(o)
		return nil
	}
}

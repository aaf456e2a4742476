package option

// Always returns an option that applies set and never fails, for options
// whose every value is valid (a flag, a bound where 0 means off). Its result
// is assignable to a package's Option type like Check's.
func Always[T any](set func(*T)) func(*T) error {
	return func(o *T) error {
		set(o)
		return nil
	}
}

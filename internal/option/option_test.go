package option

import (
	"errors"
	"testing"
)

func TestCheck(t *testing.T) {
	type options struct{ n int }
	tests := []struct {
		name    string
		ok      bool
		wantErr bool
		wantN   int
	}{
		{"accepted value is set", true, false, 3},
		{"refused value is not set", false, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var o options
			err := Check(tc.ok, "n must be positive", func(o *options) { o.n = 3 })(&o)
			if (err != nil) != tc.wantErr || o.n != tc.wantN {
				t.Errorf("got n %d, error %v; want n %d, error %v", o.n, err, tc.wantN, tc.wantErr)
			}
			if err != nil && err.Error() != "n must be positive" {
				t.Errorf("error %q", err)
			}
		})
	}
}

func TestAlways(t *testing.T) {
	type options struct{ on bool }
	var o options
	if err := Always(func(o *options) { o.on = true })(&o); err != nil || !o.on {
		t.Errorf("got %v, %v; want the value set and no error", o.on, err)
	}
}

func TestErr(t *testing.T) {
	type options struct{ n int }
	refused := errors.New("n is refused")
	tests := []struct {
		name  string
		err   error
		wantN int
	}{
		{"accepted value is set", nil, 3},
		{"refused value is not set and its own error returned", refused, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var o options
			err := Err(tc.err, func(o *options) { o.n = 3 })(&o)
			if err != tc.err || o.n != tc.wantN {
				t.Errorf("got n %d, error %v; want n %d, error %v", o.n, err, tc.wantN, tc.err)
			}
		})
	}
}

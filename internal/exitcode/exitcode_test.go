package exitcode

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func TestReport(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name     string
		err      error
		fallback int
		code     int
		out      string
		silent   bool
	}{
		{name: "success", err: nil, fallback: 1, code: OK},
		{name: "plain error uses the fallback", err: boom, fallback: 2, code: 2, out: "cmd: boom\n"},
		{name: "coded error", err: New(2, boom), fallback: 1, code: 2, out: "cmd: boom\n"},
		{name: "wrapped coded error", err: fmt.Errorf("running: %w", Errorf(3, "bad %s", "flag")), fallback: 1, code: 3, out: "cmd: running: bad flag\n"},
		{name: "already reported", err: New(1, nil), fallback: 2, code: 1, silent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if got := Report(&b, "cmd", tt.err, tt.fallback); got != tt.code {
				t.Errorf("code %d, want %d", got, tt.code)
			}
			if b.String() != tt.out {
				t.Errorf("printed %q, want %q", b.String(), tt.out)
			}
			if Silent(tt.err) != tt.silent {
				t.Errorf("Silent = %v, want %v", Silent(tt.err), tt.silent)
			}
			if tt.err != nil && tt.code != tt.fallback && !Is(tt.err, tt.code) {
				t.Errorf("Is(err, %d) = false", tt.code)
			}
		})
	}
	if !errors.Is(New(2, boom), boom) {
		t.Error("the cause is not unwrapped")
	}
	if got := New(1, nil).Error(); got != "exit 1" {
		t.Errorf("silent error text %q", got)
	}
}

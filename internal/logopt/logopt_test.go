package logopt

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"
)

func TestLogopt(t *testing.T) {
	if err := Check(nil); !errors.Is(err, ErrNil) {
		t.Errorf("Check(nil) = %v, want ErrNil", err)
	}
	var b bytes.Buffer
	l := slog.New(slog.NewTextHandler(&b, nil))
	if err := Check(l); err != nil {
		t.Errorf("Check(logger) = %v", err)
	}
	if Or(l) != l {
		t.Error("Or replaced a given logger")
	}
	Or(nil).Error("dropped")
	Discard().Error("dropped")
	if Discard().Enabled(context.Background(), slog.LevelError) {
		t.Error("the default logger is enabled")
	}
	if b.Len() != 0 {
		t.Errorf("wrote %q", b.String())
	}
}

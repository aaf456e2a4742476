package logopt

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"strings"
	"testing"
)

func TestLogopt(t *testing.T) {
	var b bytes.Buffer
	l := slog.New(slog.NewTextHandler(&b, nil))
	dst := Discard()
	if err := Set(&dst, nil); !errors.Is(err, ErrNil) || dst == nil {
		t.Errorf("Set(nil) = %v and cleared the logger, want ErrNil", err)
	}
	if err := Set(&dst, l); err != nil || dst != l {
		t.Errorf("Set(logger) = %v, logger not stored", err)
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

func TestNew(t *testing.T) {
	tests := []struct {
		format, level, want, err string
	}{
		{format: "json", level: "warn", want: `"msg":"shown"`},
		{format: "text", level: "WARN", want: "msg=shown"},
		{format: "yaml", level: "warn", err: `--log-format "yaml": want json or text`},
		{format: "json", level: "loud", err: `--log-level "loud": want debug, info, warn or error`},
	}
	for _, tt := range tests {
		t.Run(tt.format+" "+tt.level, func(t *testing.T) {
			var b bytes.Buffer
			l, err := New(&b, tt.format, tt.level)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("New = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l.Info("hidden")
			l.Warn("shown")
			if got := b.String(); !strings.Contains(got, tt.want) || strings.Contains(got, "hidden") {
				t.Errorf("logged %q, want %s at warn and above only", got, tt.want)
			}
		})
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // "" for an error
	}{
		{"defaults: json at info", nil, `"msg":"shown"`},
		{"text at warn", []string{"-log-format", "text", "-log-level", "warn"}, "msg=shown"},
		{"unknown format refused", []string{"-log-format", "yaml"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Flags
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			f.Register(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			l, err := f.Logger(&b)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("flags %v gave a logger, want an error", tt.args)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l.Debug("hidden")
			l.Warn("shown")
			if got := b.String(); !strings.Contains(got, tt.want) || strings.Contains(got, "hidden") {
				t.Errorf("logged %q, want %s and no debug record", got, tt.want)
			}
		})
	}
}

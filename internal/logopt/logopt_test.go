package logopt

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
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

// TestNew runs each case through New and through Flags given the same
// values as --log-format and --log-level.
func TestNew(t *testing.T) {
	tests := []struct {
		format, level, want, err string
	}{
		{format: "json", level: "warn", want: `"msg":"shown"`},
		{format: "text", level: "WARN", want: "msg=shown"},
		{format: "yaml", level: "warn", err: `--log-format "yaml": want json or text`},
		{format: "json", level: "loud", err: `--log-level "loud": want debug, info, warn or error`},
	}
	builds := map[string]func(w io.Writer, format, level string) (*slog.Logger, error){
		"New": New,
		"Flags": func(w io.Writer, format, level string) (*slog.Logger, error) {
			var f Flags
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			f.Register(fs)
			if err := fs.Parse([]string{"-log-format", format, "-log-level", level}); err != nil {
				return nil, err
			}
			return f.Logger(w)
		},
	}
	for _, tt := range tests {
		for name, build := range builds {
			t.Run(name+" "+tt.format+" "+tt.level, func(t *testing.T) {
				var b bytes.Buffer
				l, err := build(&b, tt.format, tt.level)
				if tt.err != "" {
					if err == nil || err.Error() != tt.err {
						t.Fatalf("%s = %v, want %q", name, err, tt.err)
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
}

func TestFlagsDefaults(t *testing.T) {
	var f Flags
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	f.Register(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if f.Format != "json" || f.Level != "info" {
		t.Errorf("defaults %+v, want json at info", f)
	}
}

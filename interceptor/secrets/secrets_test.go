package secrets

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "gitlab-webhook"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gitlab-webhook", "token"), []byte("s3cr3t"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := Dir(dir)
	ctx := context.Background()
	got, err := d.GetSecret(ctx, "any-namespace", "gitlab-webhook", "token")
	if err != nil || string(got) != "s3cr3t" {
		t.Fatalf("GetSecret() = %q, %v", got, err)
	}
	for _, tt := range []struct{ name, key, want string }{
		{"gitlab-webhook", "missing", "no file"},
		{"absent", "token", "no file"},
		{"..", "token", "invalid secret name"},
		{"gitlab-webhook", "../../etc/passwd", "invalid secret key"},
		{"gitlab-webhook", "..", "invalid secret key"},
		{"Upper", "token", "invalid secret name"},
	} {
		if _, err := d.GetSecret(ctx, "", tt.name, tt.key); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("GetSecret(%q, %q) error = %v, want %q", tt.name, tt.key, err, tt.want)
		}
	}
}

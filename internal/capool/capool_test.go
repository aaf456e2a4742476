package capool

import (
	"crypto/x509"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoad verifies the certificate of a loopback HTTPS server against the
// pool of its CA file, and refuses files that hold no certificate.
func TestLoad(t *testing.T) {
	srv := httptest.NewTLSServer(nil)
	defer srv.Close()
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name, path, wantErr string
	}{
		{"PEM certificate", write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})), ""},
		{"no certificate", write("not.pem", []byte("not a certificate")), "no PEM certificate"},
		{"missing file", filepath.Join(dir, "none.pem"), "reading CA file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := Load(tc.path)
			switch {
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Load() = %v, want an error with %q", err, tc.wantErr)
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr == "":
				if _, err := srv.Certificate().Verify(x509.VerifyOptions{Roots: pool}); err != nil {
					t.Errorf("the server's certificate does not verify against the pool: %v", err)
				}
			}
		})
	}
}

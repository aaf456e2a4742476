package certs

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// FileSource serves a certificate from files managed elsewhere (a
// cert-manager Certificate mounted as a Secret volume) and reloads them when
// they change, checking at most once per interval.
type FileSource struct {
	certFile, keyFile string
	interval          time.Duration
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	checked time.Time
	stamp   string
}

// NewFileSource loads certFile and keyFile now (so a bad pair fails at
// start-up) and returns a source that reloads them when their modification
// time or size changes. interval <= 0 means 10s.
func NewFileSource(certFile, keyFile string, interval time.Duration) (*FileSource, error) {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	f := &FileSource{certFile: certFile, keyFile: keyFile, interval: interval, now: time.Now}
	if err := f.reload(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *FileSource) fingerprint() (string, error) {
	var s string
	for _, p := range []string{f.certFile, f.keyFile} {
		st, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("reading TLS file: %w", err)
		}
		s += fmt.Sprintf("%s:%d:%d;", p, st.ModTime().UnixNano(), st.Size())
	}
	return s, nil
}

func (f *FileSource) reload() error {
	stamp, err := f.fingerprint()
	if err != nil {
		return err
	}
	if stamp == f.stamp && f.cert != nil {
		return nil
	}
	c, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return fmt.Errorf("loading TLS certificate %s and key %s: %w", f.certFile, f.keyFile, err)
	}
	f.cert, f.stamp = &c, stamp
	return nil
}

// GetCertificate implements tls.Config.GetCertificate. If the files are
// being rewritten and do not load, the previous certificate keeps serving.
func (f *FileSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := f.now(); now.Sub(f.checked) >= f.interval {
		f.checked = now
		_ = f.reload() // keep serving the last good pair
	}
	return f.cert, nil
}

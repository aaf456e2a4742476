package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"time"

	"github.com/ciel-ci/ciel/internal/filewatch"
)

// FileSource serves a certificate from files managed elsewhere (a
// cert-manager Certificate mounted as a Secret volume) and reloads them when
// their content changes (package filewatch), checking at most once per
// interval.
type FileSource struct {
	pair     *filewatch.Value[*tls.Certificate]
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	checked time.Time
}

// NewFileSource loads certFile and keyFile now (so a bad pair fails at
// start-up) and returns a source that reloads them when their content
// changes. interval <= 0 means 10s.
func NewFileSource(certFile, keyFile string, interval time.Duration) (*FileSource, error) {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	pair, err := filewatch.New(context.Background(), filewatch.Files(certFile, keyFile), func(context.Context) (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("loading TLS certificate %s and key %s: %w", certFile, keyFile, err)
		}
		return &c, nil
	})
	if err != nil {
		return nil, fmt.Errorf("serving TLS from files: %w", err)
	}
	return &FileSource{pair: pair, interval: interval, now: time.Now}, nil
}

// GetCertificate implements tls.Config.GetCertificate. If the files are
// being rewritten and do not load, the previous certificate keeps serving.
func (f *FileSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	if now := f.now(); now.Sub(f.checked) >= f.interval {
		f.checked = now
		_, _ = f.pair.Reload(context.Background()) // keep serving the last good pair
	}
	f.mu.Unlock()
	c, _ := f.pair.Get()
	return c, nil
}

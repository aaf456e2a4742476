// Package capool loads the certificate authorities a ciel client trusts:
// the system roots plus those of a PEM file (a self-hosted GitLab or a
// registry with a private CA). Every client with a CA file option (package
// gitlabclient, internal/registryclient) loads it here.
package capool

import (
	"crypto/x509"
	"fmt"
	"os"
)

// Load returns the system roots plus the PEM certificates in path; a file
// without any certificate is an error.
func Load(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("reading CA file %s: no PEM certificate found", path)
	}
	return pool, nil
}

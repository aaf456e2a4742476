package harness

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/cgi"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ciel-ci/ciel/internal/gitlabtest"
)

// GitLabToken is the API token of the suite's GitLab (the Secret
// ciel-gitlab-api of docs/install.md, step 7).
const GitLabToken = "glpat-e2e"

// GitLab is the suite's GitLab: the API stub of internal/gitlabtest and
// git's own smart HTTP server for the repositories under ReposDir, on one
// HTTPS host (the node address, port 443) as a GitLab serves both, with a
// certificate of its own CA.
type GitLab struct {
	*gitlabtest.Server
	// Host is the host of every URL (no port: 443), e.g. "10.255.255.1".
	Host string
	// BaseURL is "https://Host".
	BaseURL string
	// CAPEM is the CA that signed the server's certificate.
	CAPEM []byte
	// ReposDir holds the repositories, as <ReposDir>/<group>/<project>.git.
	ReposDir string
}

// StartGitLab serves the suite's GitLab on host:443 until the test
// binary's cleanup runs (t may be a suite-level cleanup registry).
func StartGitLab(t interface{ Cleanup(func()) }, host, reposDir string) (*GitLab, error) {
	caPEM, cert, err := selfSignedServer(host)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "443"))
	if err != nil {
		return nil, fmt.Errorf("the suite's GitLab: %w", err)
	}
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("finding git http-backend: %w", err)
	}
	git := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + reposDir, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + reposDir},
	}
	srv := gitlabtest.NewServerOn(t, GitLabToken, l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, git)
	return &GitLab{Server: srv, Host: host, BaseURL: "https://" + host, CAPEM: caPEM, ReposDir: reposDir}, nil
}

// Client returns an HTTP client trusting the GitLab's CA.
func (g *GitLab) Client() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(g.CAPEM)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// selfSignedServer makes a CA and a serving certificate for host (an IP
// address or a DNS name) signed by it.
func selfSignedServer(host string) (caPEM []byte, cert tls.Certificate, err error) {
	now := time.Now()
	caDER, caKey, err := signCert(&x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ciel e2e GitLab CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, nil, nil)
	if err != nil {
		return nil, cert, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, cert, err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		leaf.IPAddresses = []net.IP{ip}
	} else {
		leaf.DNSNames = []string{host}
	}
	der, key, err := signCert(leaf, ca, caKey)
	if err != nil {
		return nil, cert, err
	}
	keyPEM, err := ecKeyPEM(key)
	if err != nil {
		return nil, cert, err
	}
	cert, err = tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM)
	if err != nil {
		return nil, cert, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), cert, nil
}

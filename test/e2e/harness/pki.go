package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/ciel-ci/ciel/internal/registrytest"
)

// PKI is the set of keys and certificates of one control plane, as files in
// Dir. Everything is signed by one CA made for the run.
type PKI struct {
	Dir string

	CACert string // CA certificate (PEM); also the client CA of the apiserver
	CAKey  string

	APIServerCert string // serving certificate for 127.0.0.1 and the in-cluster names
	APIServerKey  string

	AdminCert string // client certificate of the admin user, group system:masters
	AdminKey  string

	ServiceAccountKey    string // signs service-account tokens
	ServiceAccountPubKey string

	InterceptorCert string // serving certificate for 127.0.0.1 and localhost, for interceptors
	InterceptorKey  string

	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// CAPEM returns the CA certificate in PEM form (for caBundle fields).
func (p *PKI) CAPEM() ([]byte, error) {
	b, err := os.ReadFile(p.CACert)
	if err != nil {
		return nil, fmt.Errorf("reading the CA certificate: %w", err)
	}
	return b, nil
}

// NewPKI makes a CA, the apiserver's serving certificate, an admin client
// certificate, a service-account key pair and a serving certificate for
// interceptors, and writes them under dir.
func NewPKI(dir string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("making the PKI: %w", err)
	}
	p := &PKI{
		Dir:                  dir,
		CACert:               filepath.Join(dir, "ca.crt"),
		CAKey:                filepath.Join(dir, "ca.key"),
		APIServerCert:        filepath.Join(dir, "apiserver.crt"),
		APIServerKey:         filepath.Join(dir, "apiserver.key"),
		AdminCert:            filepath.Join(dir, "admin.crt"),
		AdminKey:             filepath.Join(dir, "admin.key"),
		ServiceAccountKey:    filepath.Join(dir, "sa.key"),
		ServiceAccountPubKey: filepath.Join(dir, "sa.pub"),
		InterceptorCert:      filepath.Join(dir, "interceptor.crt"),
		InterceptorKey:       filepath.Join(dir, "interceptor.key"),
	}
	if err := p.makeCA(); err != nil {
		return nil, fmt.Errorf("making the CA: %w", err)
	}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if err := p.issue(p.APIServerCert, p.APIServerKey, pkix.Name{CommonName: "kube-apiserver"},
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		append(loopback, net.IPv4(10, 0, 0, 1)),
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}); err != nil {
		return nil, fmt.Errorf("making the apiserver certificate: %w", err)
	}
	if err := p.issue(p.AdminCert, p.AdminKey, pkix.Name{CommonName: "ciel-e2e-admin", Organization: []string{"system:masters"}},
		[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil); err != nil {
		return nil, fmt.Errorf("making the admin certificate: %w", err)
	}
	if err := p.issue(p.InterceptorCert, p.InterceptorKey, pkix.Name{CommonName: "127.0.0.1"},
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, loopback, []string{"localhost"}); err != nil {
		return nil, fmt.Errorf("making the interceptor certificate: %w", err)
	}
	if err := p.makeServiceAccountKeys(); err != nil {
		return nil, fmt.Errorf("making the service-account keys: %w", err)
	}
	return p, nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// sign makes a P-256 key and a certificate of tmpl for it, valid from an
// hour ago for a week, signed by the CA, or by itself when self is set.
func (p *PKI) sign(tmpl *x509.Certificate, self bool) ([]byte, *ecdsa.PrivateKey, error) {
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = sn, now.Add(-time.Hour), now.Add(7*24*time.Hour)
	if self {
		return signCert(tmpl, nil, nil)
	}
	return signCert(tmpl, p.caCert, p.caKey)
}

// signCert is registrytest.Issue with the certificate's DER.
func signCert(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) ([]byte, *ecdsa.PrivateKey, error) {
	cert, key, err := registrytest.Issue(tmpl, parent, parentKey)
	if err != nil {
		return nil, nil, err
	}
	return cert.Raw, key, nil
}

func (p *PKI) makeCA() error {
	der, key, err := p.sign(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "ciel-e2e-ca"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, true)
	if err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	p.caCert, p.caKey = cert, key
	if err := writePEMFile(p.CACert, "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return writeECKey(p.CAKey, key)
}

func (p *PKI) issue(certFile, keyFile string, subject pkix.Name, usage []x509.ExtKeyUsage, ips []net.IP, dns []string) error {
	der, key, err := p.sign(&x509.Certificate{
		Subject:     subject,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: usage,
		IPAddresses: ips,
		DNSNames:    dns,
	}, false)
	if err != nil {
		return err
	}
	if err := writePEMFile(certFile, "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return writeECKey(keyFile, key)
}

func (p *PKI) makeServiceAccountKeys() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	if err := writeECKey(p.ServiceAccountKey, key); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	return writePEMFile(p.ServiceAccountPubKey, "PUBLIC KEY", pub, 0o644)
}

func writeECKey(path string, key *ecdsa.PrivateKey) error {
	b, err := ecKeyPEM(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// ecKeyPEM is key as an "EC PRIVATE KEY" PEM block.
func ecKeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func writePEMFile(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

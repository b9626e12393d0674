// Package securetest gives tests the secured infrastructure users run catalog on: a test CA
// and certificates made with crypto/x509, a real Apache Kafka broker with a SASL_SSL listener
// and SCRAM users, a TLS-terminating search proxy that requires credentials in front of the
// real search server, and a throwaway PostgreSQL cluster that serves TLS. Every server is
// started by the test itself, on a free loopback port, with its state in a temporary
// directory; a server that cannot start skips the test on a laptop and fails it in CI.
package securetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority made for one test run.
type CA struct {
	// CertFile is the CA certificate (PEM), what clients trust.
	CertFile string
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
	dir      string
}

// Pair is a certificate (PEM: the leaf, then the CA) and its private key (PEM, PKCS #8) on
// disk.
type Pair struct {
	CertFile, KeyFile string
	// Cert is the parsed leaf.
	Cert *x509.Certificate
}

// NewCA makes a CA whose files live in dir.
func NewCA(tb testing.TB, dir, name string) *CA {
	tb.Helper()
	tmpl := &x509.Certificate{
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	cert, key := sign(tb, name, tmpl, nil, nil)
	ca := &CA{CertFile: filepath.Join(dir, name+"-ca.pem"), cert: cert, key: key, dir: dir}
	writePEM(tb, ca.CertFile, "CERTIFICATE", cert.Raw)
	return ca
}

// sign makes a key and a certificate for name from tmpl, signed by parent (self-signed when
// nil), valid from an hour ago for a day.
func sign(tb testing.TB, name string, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl.SerialNumber = serial(tb)
	tmpl.Subject = pkix.Name{CommonName: name}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return cert, key
}

// Fingerprint is the SHA-256 fingerprint of the CA certificate in hex, as Elasticsearch
// prints it.
func (ca *CA) Fingerprint() string {
	sum := sha256.Sum256(ca.cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Pool is a pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Issue makes a certificate for server and client authentication, valid for hosts (IP
// addresses or DNS names), and writes it and its key as name.pem and name-key.pem.
func (ca *CA) Issue(tb testing.TB, name string, hosts ...string) Pair {
	tb.Helper()
	tmpl := &x509.Certificate{
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	cert, key := sign(tb, name, tmpl, ca.cert, ca.key)
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	p := Pair{CertFile: filepath.Join(ca.dir, name+".pem"), KeyFile: filepath.Join(ca.dir, name+"-key.pem"), Cert: cert}
	// The file holds the chain, leaf first, as servers send it (and as Elasticsearch's
	// clients expect when they pin the CA by its fingerprint).
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...)
	if err := os.WriteFile(p.CertFile, chain, 0o644); err != nil {
		tb.Fatal(err)
	}
	writePEM(tb, p.KeyFile, "PRIVATE KEY", pk)
	if err := os.Chmod(p.KeyFile, 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// TLSConfig is a server configuration with the pair's certificate.
func (p Pair) TLSConfig(tb testing.TB) *tls.Config {
	tb.Helper()
	c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
	if err != nil {
		tb.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
}

// Fingerprint is the SHA-256 fingerprint of the leaf in hex with colons (AB:CD:...), the
// form openssl and Elasticsearch print.
func (p Pair) Fingerprint() string {
	sum := sha256.Sum256(p.Cert.Raw)
	out := make([]byte, 0, 3*len(sum))
	for i, b := range sum {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, "0123456789ABCDEF"[b>>4], "0123456789ABCDEF"[b&15])
	}
	return string(out)
}

func serial(tb testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func writePEM(tb testing.TB, path, typ string, der []byte) {
	tb.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		tb.Fatal(err)
	}
}

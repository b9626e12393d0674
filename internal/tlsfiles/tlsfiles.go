// Package tlsfiles reads the PEM files of the TLS settings (CA bundles, certificate and key
// pairs) for every client and server of the process, with errors that name the file, so a
// misplaced mount reads the same whichever setting it belongs to.
package tlsfiles

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// CAPool reads a PEM bundle of CA certificates. A file without any certificate is an error:
// trusting nothing would fail every handshake later with a misleading message.
func CAPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// KeyPair reads a PEM certificate (chain) and its private key.
func KeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// ClientConfig is a client's TLS configuration: TLS 1.2 or newer, the CAs of caFile (the
// system roots when empty) and the client certificate of certFile and keyFile for mutual TLS
// (none when empty).
func ClientConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := CAPool(caFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		cert, err := KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// ParseSHA256Fingerprint reads a SHA-256 certificate fingerprint in hex, with or without
// colons (AB:CD:... as Elasticsearch and openssl print it).
func ParseSHA256Fingerprint(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if err != nil || len(b) != sha256.Size {
		return nil, errors.New("want the 64 hex digits of a SHA-256 fingerprint (colons allowed)")
	}
	return b, nil
}

// PinSHA256 returns a tls.Config.VerifyConnection that accepts a server only when one of the
// certificates it sent has the given SHA-256 fingerprint: how Elasticsearch's clients trust a
// cluster's self-signed CA by the fingerprint it prints at first start. It runs after (and in
// addition to) the chain verification, which a caller that trusts the pin alone turns off. A
// mismatch is a *tls.CertificateVerificationError, like any other untrusted certificate.
func PinSHA256(fingerprint []byte) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		for _, c := range cs.PeerCertificates {
			if sum := sha256.Sum256(c.Raw); bytes.Equal(sum[:], fingerprint) {
				return nil
			}
		}
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates,
			Err: fmt.Errorf("certificate fingerprint mismatch: none of the %d certificates the server sent has the SHA-256 fingerprint %X",
				len(cs.PeerCertificates), fingerprint)}
	}
}

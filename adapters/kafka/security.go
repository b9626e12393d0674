package kafka

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	xdgscram "github.com/xdg-go/scram"

	"github.com/marketplace/catalog/internal/tlsfiles"
)

// SASL mechanisms of SecurityConfig.SASLMechanism (KAFKA_SASL_MECHANISM).
const (
	SASLPlain       = "PLAIN"
	SASLSCRAMSHA256 = "SCRAM-SHA-256"
	SASLSCRAMSHA512 = "SCRAM-SHA-512"
)

// SecurityConfig says how the catalog's Kafka clients connect to a secured cluster: TLS with
// the system roots or a CA bundle (and a client certificate for mutual TLS), SASL with a user
// and a password. The zero value is plaintext without authentication. NewSecurity turns it
// into a Security, which configures both client libraries of the process from the same values.
type SecurityConfig struct {
	// TLS turns TLS on with the system roots (KAFKA_TLS). Any of the files below turns it on too.
	TLS bool
	// CAFile is a PEM bundle of the CAs that sign the brokers' certificates (KAFKA_TLS_CA_FILE);
	// empty trusts the system roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and key of mutual TLS
	// (KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE).
	CertFile, KeyFile string
	// SASLMechanism is "" (no SASL), SASLPlain, SASLSCRAMSHA256 or SASLSCRAMSHA512.
	SASLMechanism string
	// Username and Password are the SASL credentials (KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD).
	Username, Password string
}

func (c SecurityConfig) tlsEnabled() bool {
	return c.TLS || c.CAFile != "" || c.CertFile != "" || c.KeyFile != ""
}

// Validate reports every setting that cannot work.
func (c SecurityConfig) Validate() error {
	var errs []error
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("a client certificate needs both its certificate and its key file"))
	}
	switch c.SASLMechanism {
	case "":
		if c.Username != "" || c.Password != "" {
			errs = append(errs, errors.New("SASL credentials without a SASL mechanism"))
		}
	case SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512:
		if c.Username == "" || c.Password == "" {
			errs = append(errs, fmt.Errorf("SASL %s needs a user and a password", c.SASLMechanism))
		}
	default:
		errs = append(errs, fmt.Errorf("SASL mechanism %q is not one of %s, %s, %s", c.SASLMechanism, SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kafka security: %w", err)
	}
	return nil
}

// String describes the settings without the password, for logs and errors.
func (c SecurityConfig) String() string {
	var parts []string
	if c.tlsEnabled() {
		t := "TLS"
		if c.CAFile != "" {
			t += " (CA " + c.CAFile + ")"
		}
		if c.CertFile != "" {
			t += " with client certificate " + c.CertFile
		}
		parts = append(parts, t)
	}
	if c.SASLMechanism != "" {
		parts = append(parts, fmt.Sprintf("SASL %s as %q", c.SASLMechanism, c.Username))
	}
	if len(parts) == 0 {
		return "plaintext"
	}
	return strings.Join(parts, ", ")
}

// GoString keeps %#v from printing the password.
func (c SecurityConfig) GoString() string { return "kafka.SecurityConfig{" + c.String() + "}" }

// LogValue keeps a slog attribute from printing the password.
func (c SecurityConfig) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalText keeps JSON and text encodings from printing the password.
func (c SecurityConfig) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// Security is a loaded SecurityConfig: the TLS configuration built once (files read, keys
// parsed) and the SASL credentials. Every client of the process takes its settings from one
// Security: franz-go clients through Opts, Sarama through ApplySarama, so the two libraries can
// never disagree. A nil *Security is plaintext without authentication.
type Security struct {
	desc       string
	tls        *tls.Config
	mechanism  string
	user, pass string
}

// NewSecurity validates c and loads its files. An unreadable or invalid file is an error
// naming it; nothing of the password reaches the error.
func NewSecurity(c SecurityConfig) (*Security, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	s := &Security{desc: c.String(), mechanism: c.SASLMechanism, user: c.Username, pass: c.Password}
	if !c.tlsEnabled() {
		return s, nil
	}
	tc, err := tlsfiles.ClientConfig(c.CAFile, c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("kafka security: %w", err)
	}
	s.tls = tc
	return s, nil
}

// String describes the security without the password.
func (s *Security) String() string {
	if s == nil || s.desc == "" {
		return "plaintext"
	}
	return s.desc
}

// LogValue keeps a slog attribute from printing the password.
func (s *Security) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Opts are the franz-go options of the security settings; append them to any client's
// options (kgo.NewClient(append(sec.Opts(), ...)...)). Nil for plaintext.
func (s *Security) Opts() []kgo.Opt {
	if s == nil {
		return nil
	}
	var opts []kgo.Opt
	if s.tls != nil {
		// franz-go clones the configuration per broker and sets ServerName to its host.
		opts = append(opts, kgo.DialTLSConfig(s.tls.Clone()))
	}
	if m := s.franzMechanism(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return opts
}

func (s *Security) franzMechanism() sasl.Mechanism {
	switch s.mechanism {
	case SASLPlain:
		return plain.Auth{User: s.user, Pass: s.pass}.AsMechanism()
	case SASLSCRAMSHA256:
		return scram.Auth{User: s.user, Pass: s.pass}.AsSha256Mechanism()
	case SASLSCRAMSHA512:
		return scram.Auth{User: s.user, Pass: s.pass}.AsSha512Mechanism()
	}
	return nil
}

// ApplySarama sets the same security on a Sarama configuration (watermill-kafka's publisher
// and subscriber take one). Sarama has no SCRAM of its own: it takes a client generator,
// which is xdg-go/scram as Sarama's documentation does it.
func (s *Security) ApplySarama(sc *sarama.Config) {
	if s == nil {
		return
	}
	if s.tls != nil {
		sc.Net.TLS.Enable = true
		// Sarama clones it and sets ServerName to the broker's host when it is empty.
		sc.Net.TLS.Config = s.tls.Clone()
	}
	if s.mechanism == "" {
		return
	}
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Handshake = true
	sc.Net.SASL.User = s.user
	sc.Net.SASL.Password = s.pass
	switch s.mechanism {
	case SASLPlain:
		sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case SASLSCRAMSHA256:
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &xdgSCRAMClient{hash: sha256.New} }
	case SASLSCRAMSHA512:
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &xdgSCRAMClient{hash: sha512.New} }
	}
}

// xdgSCRAMClient is sarama.SCRAMClient over xdg-go/scram (Sarama's documented way).
type xdgSCRAMClient struct {
	hash xdgscram.HashGeneratorFcn
	conv *xdgscram.ClientConversation
}

func (x *xdgSCRAMClient) Begin(user, password, authzID string) error {
	cl, err := x.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	x.conv = cl.NewConversation()
	return nil
}

func (x *xdgSCRAMClient) Step(challenge string) (string, error) { return x.conv.Step(challenge) }

func (x *xdgSCRAMClient) Done() bool { return x.conv.Done() }

// explain wraps the failure of what (an operation) with the line an operator needs: which
// setting to check. Authentication and TLS failures are not retried by the clients, so they
// surface at once.
func explain(what string, err error, cfg Config) error {
	at := strings.Join(cfg.Brokers, ",")
	var (
		unknownCA *x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		header    tls.RecordHeaderError
		firstEOF  *kgo.ErrFirstReadEOF
		remote    *net.OpError
	)
	var hint string
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		hint = fmt.Sprintf("SASL authentication failed at %s (%s): check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM", at, cfg.Security)
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		hint = fmt.Sprintf("the brokers at %s do not offer this SASL mechanism (%s): check KAFKA_SASL_MECHANISM", at, cfg.Security)
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify):
		hint = fmt.Sprintf("the brokers' TLS certificate at %s is not trusted: check KAFKA_TLS_CA_FILE and that the certificate names the broker's host", at)
	case strings.Contains(err.Error(), "plaintext connection speaking to a tls endpoint"):
		hint = fmt.Sprintf("the broker at %s speaks TLS on that port: set KAFKA_TLS=true (or KAFKA_TLS_CA_FILE)", at)
	case errors.As(err, &header):
		hint = fmt.Sprintf("TLS is on but the broker at %s does not speak TLS on that port: check KAFKA_BROKERS and KAFKA_TLS", at)
	case errors.As(err, &firstEOF):
		hint = fmt.Sprintf("the broker at %s closed the connection at once; it probably requires TLS or SASL (this client uses %s)", at, cfg.Security)
	case errors.As(err, &remote) && remote.Op == "remote error": // a TLS alert from the broker

		hint = fmt.Sprintf("the broker at %s refused the TLS handshake: does it require a client certificate (KAFKA_TLS_CERT_FILE)?", at)
	}
	if hint == "" {
		return fmt.Errorf("kafka: %s: %w", what, err)
	}
	return fmt.Errorf("kafka: %s: %s: %w", what, hint, err)
}

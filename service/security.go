package service

import (
	"errors"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/marketplace/catalog/internal/tlsfiles"
)

// KafkaSASLMechanisms are the values KAFKA_SASL_MECHANISM accepts.
var KafkaSASLMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

// KafkaTLSEnabled reports whether the Kafka clients use TLS: KAFKA_TLS=true, or any TLS file.
func (c Config) KafkaTLSEnabled() bool {
	return c.KafkaTLS || c.KafkaTLSCAFile != "" || c.KafkaTLSCertFile != "" || c.KafkaTLSKeyFile != ""
}

// GRPCClientTLSEnabled reports whether the CLI reaches GRPC_ADDR over TLS.
func (c Config) GRPCClientTLSEnabled() bool {
	return c.GRPCClientTLS || c.GRPCClientTLSCAFile != "" || c.GRPCClientTLSCertFile != "" ||
		c.GRPCClientTLSKeyFile != "" || c.GRPCClientTLSServerName != ""
}

// AdminMTLS reports whether the admin port requires client certificates.
func (c Config) AdminMTLS() bool { return c.GRPCTLSClientCAFile != "" }

// ElasticsearchURLs splits ELASTICSEARCH_URL, which may list several nodes of one cluster.
func (c Config) ElasticsearchURLs() []string {
	var out []string
	for _, u := range strings.Split(c.ElasticsearchURL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// RedactURLs is RedactURL for a comma-separated list.
func RedactURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = RedactURL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// validateSecurity adds the errors of the TLS, SASL, credential and listener settings.
func (c Config) validateSecurity(bad func(name string, v any, want string)) {
	pair := func(a, b string, va, vb string) {
		if (va == "") != (vb == "") {
			if va == "" {
				bad(a, va, "want it set together with "+b)
			} else {
				bad(b, vb, "want it set together with "+a)
			}
		}
	}
	// Kafka.
	pair("KAFKA_TLS_CERT_FILE", "KAFKA_TLS_KEY_FILE", c.KafkaTLSCertFile, c.KafkaTLSKeyFile)
	sasl := c.KafkaSASLMechanism != "" || c.KafkaSASLUsername != "" || c.KafkaSASLPassword.IsSet() || c.KafkaSASLPasswordFile != ""
	switch {
	case c.KafkaSASLMechanism != "" && !slices.Contains(KafkaSASLMechanisms, c.KafkaSASLMechanism):
		bad("KAFKA_SASL_MECHANISM", c.KafkaSASLMechanism, "want one of "+strings.Join(quoteAll(KafkaSASLMechanisms), ", "))
	case c.KafkaSASLMechanism == "" && sasl:
		bad("KAFKA_SASL_MECHANISM", "", "want one of "+strings.Join(quoteAll(KafkaSASLMechanisms), ", ")+
			" when KAFKA_SASL_USERNAME or KAFKA_SASL_PASSWORD is set")
	case c.KafkaSASLMechanism != "" && c.KafkaSASLUsername == "":
		bad("KAFKA_SASL_USERNAME", "", "want the SASL user of KAFKA_SASL_MECHANISM="+c.KafkaSASLMechanism)
	case c.KafkaSASLMechanism != "" && !c.KafkaSASLPassword.IsSet() && c.KafkaSASLPasswordFile == "":
		bad("KAFKA_SASL_PASSWORD", "", "want the SASL password (or KAFKA_SASL_PASSWORD_FILE) of KAFKA_SASL_MECHANISM="+c.KafkaSASLMechanism)
	}
	if len(c.KafkaBrokers) == 0 && (c.KafkaTLSEnabled() || sasl) {
		name := "KAFKA_SASL_MECHANISM"
		if c.KafkaTLSEnabled() {
			name = "KAFKA_TLS"
		}
		bad(name, "(set)", "the embedded broker (KAFKA_BROKERS empty) speaks neither TLS nor SASL; set KAFKA_BROKERS to a secured cluster")
	}

	// Elasticsearch.
	urls := c.ElasticsearchURLs()
	scheme := ""
	for _, raw := range urls {
		u, err := url.Parse(raw)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			bad("ELASTICSEARCH_URL", RedactURLs(c.ElasticsearchURL), "want empty (embedded search) or http:// or https:// URLs, comma-separated")
			return
		case scheme != "" && u.Scheme != scheme:
			bad("ELASTICSEARCH_URL", RedactURLs(c.ElasticsearchURL), "want every node URL with the same scheme")
			return
		}
		scheme = u.Scheme
	}
	esCreds := c.ElasticsearchAPIKey.IsSet() || c.ElasticsearchAPIKeyFile != "" || c.ElasticsearchUsername != "" ||
		c.ElasticsearchPassword.IsSet() || c.ElasticsearchPasswordFile != ""
	esTLS := c.ElasticsearchCAFile != "" || c.ElasticsearchCAFingerprint != ""
	if len(urls) == 0 && (esCreds || esTLS) {
		bad("ELASTICSEARCH_URL", "", "want the search cluster's URL when its credentials or CA are set (the embedded engine needs none)")
	}
	if esTLS && scheme == "http" {
		bad("ELASTICSEARCH_URL", RedactURLs(c.ElasticsearchURL), "want https:// URLs when ELASTICSEARCH_CA_FILE or ELASTICSEARCH_CA_FINGERPRINT is set")
	}
	apiKey := c.ElasticsearchAPIKey.IsSet() || c.ElasticsearchAPIKeyFile != ""
	basic := c.ElasticsearchUsername != "" || c.ElasticsearchPassword.IsSet() || c.ElasticsearchPasswordFile != ""
	switch {
	case apiKey && basic:
		bad("ELASTICSEARCH_API_KEY", Redacted, "want either the API key or ELASTICSEARCH_USERNAME/ELASTICSEARCH_PASSWORD, not both")
	case basic && c.ElasticsearchUsername == "":
		bad("ELASTICSEARCH_USERNAME", "", "want the user of ELASTICSEARCH_PASSWORD")
	case basic && !c.ElasticsearchPassword.IsSet() && c.ElasticsearchPasswordFile == "":
		bad("ELASTICSEARCH_PASSWORD", "", "want the password (or ELASTICSEARCH_PASSWORD_FILE) of ELASTICSEARCH_USERNAME")
	}
	if fp := c.ElasticsearchCAFingerprint; fp != "" {
		if _, err := tlsfiles.ParseSHA256Fingerprint(fp); err != nil {
			bad("ELASTICSEARCH_CA_FINGERPRINT", fp, err.Error())
		}
	}

	// The admin port, the CLI and the REST API.
	pair("GRPC_TLS_CERT_FILE", "GRPC_TLS_KEY_FILE", c.GRPCTLSCertFile, c.GRPCTLSKeyFile)
	if c.GRPCTLSClientCAFile != "" && c.GRPCTLSCertFile == "" {
		bad("GRPC_TLS_CLIENT_CA_FILE", c.GRPCTLSClientCAFile, "want GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE too: client certificates need a TLS server")
	}
	pair("GRPC_CLIENT_TLS_CERT_FILE", "GRPC_CLIENT_TLS_KEY_FILE", c.GRPCClientTLSCertFile, c.GRPCClientTLSKeyFile)
	pair("HTTP_TLS_CERT_FILE", "HTTP_TLS_KEY_FILE", c.HTTPTLSCertFile, c.HTTPTLSKeyFile)
	pair("CONSOLE_TLS_CERT_FILE", "CONSOLE_TLS_KEY_FILE", c.ConsoleTLSCertFile, c.ConsoleTLSKeyFile)
	if t := c.AdminToken.Reveal(); t != "" && strings.IndexFunc(t, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		bad("ADMIN_TOKEN", Redacted, "want printable ASCII without spaces (it travels in a header)")
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			bad("METRICS_ADDR", c.MetricsAddr, "want host:port, or empty to serve /metrics on HTTP_ADDR")
		} else if c.MetricsAddr == c.HTTPAddr || c.MetricsAddr == c.GRPCAddr {
			bad("METRICS_ADDR", c.MetricsAddr, "want an address of its own, not HTTP_ADDR's or GRPC_ADDR's")
		}
	}
	if c.ConsoleAddr != "" {
		if _, _, err := net.SplitHostPort(c.ConsoleAddr); err != nil {
			bad("CONSOLE_ADDR", c.ConsoleAddr, "want host:port, or empty to disable the console")
		} else if c.ConsoleAddr == c.HTTPAddr || c.ConsoleAddr == c.GRPCAddr || c.ConsoleAddr == c.MetricsAddr {
			bad("CONSOLE_ADDR", c.ConsoleAddr, "want an address of its own, not HTTP_ADDR's, GRPC_ADDR's or METRICS_ADDR's: the console never shares the public API's port")
		}
	}
}

// secretFile pairs a secret with the variable that may name a file holding it.
type secretFile struct {
	env    string
	secret *Secret
	file   string
}

func (c *Config) secretFiles() []secretFile {
	return []secretFile{
		{"KAFKA_SASL_PASSWORD", &c.KafkaSASLPassword, c.KafkaSASLPasswordFile},
		{"ELASTICSEARCH_API_KEY", &c.ElasticsearchAPIKey, c.ElasticsearchAPIKeyFile},
		{"ELASTICSEARCH_PASSWORD", &c.ElasticsearchPassword, c.ElasticsearchPasswordFile},
		{"ADMIN_TOKEN", &c.AdminToken, c.AdminTokenFile},
	}
}

// ReadSecretFiles loads every secret given as a *_FILE variable (Kubernetes and Docker mount
// secrets as files), trimming the surrounding whitespace an editor or `echo` adds. A secret
// set both directly and as a file, an unreadable file and an empty one are *SettingError
// values naming the *_FILE variable and its path, never the content. Call it before Validate,
// which then checks the secrets whichever way they came.
func (c *Config) ReadSecretFiles() error {
	var errs []error
	for _, s := range c.secretFiles() {
		if s.file == "" {
			continue
		}
		bad := func(want string) { errs = append(errs, &SettingError{Var: s.env + "_FILE", Value: s.file, Want: want}) }
		if s.secret.IsSet() {
			bad("want either " + s.env + " or " + s.env + "_FILE, not both")
			continue
		}
		b, err := os.ReadFile(s.file)
		if err != nil {
			bad("want a readable file: " + pathlessError(err))
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			bad("want a file holding the secret; this one is empty")
			continue
		}
		*s.secret = NewSecret(v)
	}
	return errors.Join(errs...)
}

// pathlessError is a file error without the path, which the SettingError shows already.
func pathlessError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// CheckAdminExposure is the secure default of the admin port: it can prune indices, roll the
// alias back, start rebuilds and replay the DLQ, so it is served beyond loopback only with
// ADMIN_TOKEN or mutual TLS. The error is one line naming GRPC_ADDR and what to set.
func (c Config) CheckAdminExposure() error {
	if c.AdminToken.IsSet() || c.AdminMTLS() || IsLoopback(c.GRPCAddr) {
		return nil
	}
	return &SettingError{Var: "GRPC_ADDR", Value: c.GRPCAddr,
		Want: "the admin port is not a loopback address and has no authentication: set ADMIN_TOKEN (or ADMIN_TOKEN_FILE), " +
			"or mutual TLS (GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE, GRPC_TLS_CLIENT_CA_FILE), or bind GRPC_ADDR to 127.0.0.1"}
}

// CheckConsoleExposure is the console's counterpart of CheckAdminExposure: the console does
// what the admin port does, so beyond loopback it is served only behind the ADMIN_TOKEN login.
func (c Config) CheckConsoleExposure() error {
	if c.ConsoleAddr == "" || c.AdminToken.IsSet() || IsLoopback(c.ConsoleAddr) {
		return nil
	}
	return &SettingError{Var: "CONSOLE_ADDR", Value: c.ConsoleAddr,
		Want: "the console is not on a loopback address and has no login: set ADMIN_TOKEN (or ADMIN_TOKEN_FILE), or bind CONSOLE_ADDR to 127.0.0.1"}
}

// IsLoopback reports whether a listen address (host:port) accepts connections from this
// machine only: "localhost" or a loopback IP. An empty host, 0.0.0.0, :: and any other name
// listen beyond it (a name is not resolved: what it resolves to can change).
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

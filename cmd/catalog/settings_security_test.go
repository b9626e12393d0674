package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/marketplace/catalog/service"
)

// loadConfig runs the settings table over env alone (no command) and returns the result.
func loadConfig(t *testing.T, env map[string]string) (service.Config, error) {
	t.Helper()
	var cfg service.Config
	s := bindSettings(pflag.NewFlagSet("t", pflag.ContinueOnError), &cfg)
	err := s.apply(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil {
		err = s.validate(&cfg)
	}
	return cfg, err
}

// TestSecuritySettingsThatCannotWork: every half-configured security setting is a
// configuration error naming the variable to fix, before anything connects.
func TestSecuritySettingsThatCannotWork(t *testing.T) {
	brokers := map[string]string{"KAFKA_BROKERS": "k1:9093"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"cert without key":             {with(brokers, "KAFKA_TLS_CERT_FILE", "/c.pem"), `KAFKA_TLS_KEY_FILE=""`},
		"user without mechanism":       {with(brokers, "KAFKA_SASL_USERNAME", "u", "KAFKA_SASL_PASSWORD", "p"), `KAFKA_SASL_MECHANISM=""`},
		"mechanism without user":       {with(brokers, "KAFKA_SASL_MECHANISM", "SCRAM-SHA-512", "KAFKA_SASL_PASSWORD", "p"), `KAFKA_SASL_USERNAME=""`},
		"mechanism without password":   {with(brokers, "KAFKA_SASL_MECHANISM", "PLAIN", "KAFKA_SASL_USERNAME", "u"), `KAFKA_SASL_PASSWORD=""`},
		"TLS with the embedded broker": {map[string]string{"KAFKA_TLS": "true"}, `KAFKA_TLS="true": the embedded broker`},
		"API key and user":             {map[string]string{"ELASTICSEARCH_URL": "https://es:9200", "ELASTICSEARCH_API_KEY": "k", "ELASTICSEARCH_USERNAME": "u", "ELASTICSEARCH_PASSWORD": "p"}, "ELASTICSEARCH_API_KEY"},
		"user without password":        {map[string]string{"ELASTICSEARCH_URL": "https://es:9200", "ELASTICSEARCH_USERNAME": "u"}, `ELASTICSEARCH_PASSWORD=""`},
		"credentials without a URL":    {map[string]string{"ELASTICSEARCH_API_KEY": "k"}, `ELASTICSEARCH_URL=""`},
		"CA over http":                 {map[string]string{"ELASTICSEARCH_URL": "http://es:9200", "ELASTICSEARCH_CA_FILE": "/ca.pem"}, "want https:// URLs"},
		"mixed schemes":                {map[string]string{"ELASTICSEARCH_URL": "https://es1:9200,http://es2:9200"}, "same scheme"},
		"client CA without a cert":     {map[string]string{"GRPC_TLS_CLIENT_CA_FILE": "/ca.pem"}, "GRPC_TLS_CLIENT_CA_FILE"},
		"grpc key without cert":        {map[string]string{"GRPC_TLS_KEY_FILE": "/k.pem"}, `GRPC_TLS_CERT_FILE=""`},
		"http cert without key":        {map[string]string{"HTTP_TLS_CERT_FILE": "/c.pem"}, `HTTP_TLS_KEY_FILE=""`},
		"metrics on the API's port":    {map[string]string{"METRICS_ADDR": "127.0.0.1:8080"}, "METRICS_ADDR"},
		"token with a space":           {map[string]string{"ADMIN_TOKEN": "two words"}, `ADMIN_TOKEN="[redacted]"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig(t, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "two words") {
				t.Fatalf("the token reached the error: %v", err)
			}
		})
	}
	cfg, err := loadConfig(t, with(brokers, "KAFKA_TLS_CA_FILE", "/ca.pem", "KAFKA_SASL_MECHANISM", "SCRAM-SHA-512",
		"KAFKA_SASL_USERNAME", "u", "KAFKA_SASL_PASSWORD", "p", "ELASTICSEARCH_URL", "https://es1:9200, https://es2:9200",
		"ELASTICSEARCH_CA_FINGERPRINT", strings.Repeat("AB:", 31)+"AB"))
	if err != nil || !cfg.KafkaTLSEnabled() || len(cfg.ElasticsearchURLs()) != 2 {
		t.Fatalf("a complete configuration: %v (%+v)", err, cfg)
	}
}

// TestSecretsComeFromFiles: *_FILE loads the secret (without the newline `echo` adds);
// both forms at once, a missing file and an empty one are errors naming the *_FILE variable
// and its path, never the content.
func TestSecretsComeFromFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tok, pw, key := write("token", "file-token-123\n"), write("pw", "  kafka-pw \r\n"), write("key", "api-key")
	cfg, err := loadConfig(t, map[string]string{"ADMIN_TOKEN_FILE": tok, "KAFKA_BROKERS": "k:9093", "KAFKA_SASL_MECHANISM": "PLAIN",
		"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD_FILE": pw, "ELASTICSEARCH_URL": "https://es:9200", "ELASTICSEARCH_API_KEY_FILE": key})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AdminToken.Reveal() != "file-token-123" || cfg.KafkaSASLPassword.Reveal() != "kafka-pw" || cfg.ElasticsearchAPIKey.Reveal() != "api-key" {
		t.Fatalf("secrets from files: %q %q %q", cfg.AdminToken.Reveal(), cfg.KafkaSASLPassword.Reveal(), cfg.ElasticsearchAPIKey.Reveal())
	}
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"both":    {map[string]string{"ADMIN_TOKEN": "direct-token", "ADMIN_TOKEN_FILE": tok}, `ADMIN_TOKEN_FILE="` + tok + `": want either ADMIN_TOKEN or ADMIN_TOKEN_FILE`},
		"missing": {map[string]string{"ADMIN_TOKEN_FILE": filepath.Join(dir, "nope")}, "want a readable file: no such file or directory"},
		"empty":   {map[string]string{"ADMIN_TOKEN_FILE": write("empty", "\n")}, "this one is empty"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig(t, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "file-token-123") || strings.Contains(err.Error(), "direct-token") {
				t.Fatalf("a token reached the error: %v", err)
			}
		})
	}
}

// TestSecretsHaveNoFlagAndNeverShow: secrets are read from the environment only (a command
// line is world-readable through ps), --help does not show them, and a printed
// configuration shows [redacted].
func TestSecretsHaveNoFlagAndNeverShow(t *testing.T) {
	const tok = "help-token-s3cret"
	t.Setenv("ADMIN_TOKEN", tok)
	t.Setenv("KAFKA_SASL_PASSWORD", tok)
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"serve", "--help"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	help := out.String()
	if strings.Contains(help, tok) || strings.Contains(help, "--admin-token ") || strings.Contains(help, "--kafka-sasl-password ") {
		t.Fatalf("--help shows a secret or a secret's flag:\n%s", help)
	}
	if !strings.Contains(help, "--admin-token-file") {
		t.Fatalf("--help lacks --admin-token-file:\n%s", help)
	}
	cfg := service.Config{AdminToken: service.NewSecret(tok), KafkaSASLPassword: service.NewSecret(tok)}
	var b bytes.Buffer
	log := service.NewLogger(&b, "json", "info")
	log.Info("cfg", "cfg", cfg, "token", cfg.AdminToken)
	for _, s := range []string{b.String(), strings.Join([]string{fmtAll(cfg)}, "")} {
		if strings.Contains(s, tok) {
			t.Fatalf("a printed configuration shows the secret: %s", s)
		}
	}
}

func fmtAll(v any) string { return fmt.Sprintf("%v %+v %#v %s", v, v, v, v) }

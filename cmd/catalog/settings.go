package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/marketplace/catalog/service"
)

// setting binds one field of service.Config to its environment variable and its flag. The
// table in settingsOf is the only place that maps a variable to a field: the flag, its help,
// the environment lookup, strict parsing and the error that names the variable all come from
// its line.
type setting struct {
	// env is the environment variable, flag the flag of the same meaning (flags win). Secrets
	// have no flag: a command line is visible to every user of the machine (ps, /proc).
	env, flag string
	// value parses into the field; its value when the table is built is the default.
	value pflag.Value
	// usage is the one-line doc shown by --help (the README table says the same).
	usage string
	// show renders a raw value for an error message; nil shows it verbatim. Variables that
	// can carry credentials set it, so no error ever prints a secret.
	show func(raw string) string
}

// settingsOf lists every setting of c. Adding a variable is one line here (and its row in
// the README's configuration table, which a test checks).
func settingsOf(c *service.Config) []setting {
	return []setting{
		{"DATABASE_URL", "database-url", str(&c.DatabaseURL), "PostgreSQL URL", service.RedactURL},
		{"KAFKA_BROKERS", "kafka-brokers", list(&c.KafkaBrokers), "Kafka bootstrap brokers, comma-separated; empty starts the embedded broker", nil},
		{"EMBEDDED_KAFKA_ADDR", "embedded-kafka-addr", str(&c.EmbeddedKafkaAddr), "listen address of the embedded Kafka broker", nil},
		{"ELASTICSEARCH_URL", "elasticsearch-url", str(&c.ElasticsearchURL), "Elasticsearch URL; empty uses the embedded search engine", service.RedactURL},
		{"ELASTICSEARCH_COMPAT", "elasticsearch-compat", str(&c.ElasticsearchCompat), `"opensearch" to accept an OpenSearch server`, nil},
		{"CATALOG_DATA_DIR", "data-dir", str(&c.DataDir), "directory of embedded components' data", nil},
		{"HTTP_ADDR", "http-addr", str(&c.HTTPAddr), "REST API listen address", nil},
		{"GRPC_ADDR", "grpc-addr", str(&c.GRPCAddr), "gRPC admin listen address", nil},
		{"SEARCH_ALIAS", "search-alias", str(&c.SearchAlias), "read model alias", nil},
		{"PRODUCT_EVENTS_TOPIC", "product-events-topic", str(&c.ProductEventsTopic), "product events topic", nil},
		{"DLQ_TOPIC", "dlq-topic", str(&c.DLQTopic), "dead-letter topic", nil},
		{"PROJECTOR_GROUP", "projector-group", str(&c.ProjectorGroup), "projector's Kafka consumer group", nil},
		{"PROJECTOR_SESSION_TIMEOUT", "projector-session-timeout", duration(&c.ProjectorSessionTimeout), "how long the projector group waits for a silent replica before moving its partitions (1s..30m; the broker must allow it)", nil},
		{"SEARCH_REFRESH_INTERVAL", "search-refresh-interval", duration(&c.SearchRefreshInterval), "refresh_interval of new read-model indices (1ms..1h)", nil},
		{"TOPIC_PARTITIONS", "topic-partitions", integer(&c.TopicPartitions), "partitions of topics the service creates (1..1000)", nil},
		{"TOPIC_REPLICATION_FACTOR", "topic-replication-factor", integer(&c.TopicReplicationFactor), "replication factor of topics the service creates (1..32; 0: the brokers' default)", nil},
		{"TOPIC_MIN_INSYNC_REPLICAS", "topic-min-insync-replicas", integer(&c.TopicMinInsyncReplicas), "min.insync.replicas of topics the service creates (1..32, at most the replication factor; 0: the brokers' default)", nil},
		{"SEARCH_SHARDS", "search-shards", integer(&c.SearchShards), "primary shards of new read-model indices (1..1024; the live index changes through a rebuild)", nil},
		{"SEARCH_REPLICAS", "search-replicas", intOrAuto(&c.SearchReplicas), "replicas per shard of read-model indices (0..32), or auto: none on one data node, one on more", nil},
		{"CATALOG_ROLES", "roles", list(&c.Roles), "roles that serve runs, comma-separated: api, relay, projector, admin (default: all)", nil},
		{"OUTBOX_LANES", "outbox-lanes", integer(&c.OutboxLanes), "outbox lanes (1..64); writers and relays must agree", nil},
		{"RELAY_POLL_INTERVAL", "relay-poll-interval", duration(&c.RelayPollInterval), "relay fallback poll interval (1ms..1m); commits wake it earlier", nil},
		{"RELAY_BATCH_SIZE", "relay-batch-size", integer(&c.RelayBatchSize), "outbox rows a relay lane reads at once (1..100000)", nil},
		{"OUTBOX_RETENTION", "outbox-retention", duration(&c.OutboxRetention), "keep relayed outbox rows this long (at least 1m)", nil},
		{"CLOUDEVENTS_SOURCE", "cloudevents-source", str(&c.CloudEventsSource), "ce_source of CloudEvents binary-mode headers on product events; empty adds none", nil},
		{"LOG_FORMAT", "log-format", str(&c.LogFormat), "log format: text or json", nil},
		{"LOG_LEVEL", "log-level", str(&c.LogLevel), "log level: debug, info, warn, error", nil},
		{"SHUTDOWN_TIMEOUT", "shutdown-timeout", duration(&c.ShutdownTimeout), "graceful shutdown limit (1s..1h)", nil},

		{"KAFKA_TLS", "kafka-tls", boolean(&c.KafkaTLS), "TLS to Kafka with the system roots (any KAFKA_TLS_*_FILE turns TLS on too)", nil},
		{"KAFKA_TLS_CA_FILE", "kafka-tls-ca-file", str(&c.KafkaTLSCAFile), "PEM CA bundle of the Kafka brokers' certificates", nil},
		{"KAFKA_TLS_CERT_FILE", "kafka-tls-cert-file", str(&c.KafkaTLSCertFile), "client certificate (PEM) for mutual TLS to Kafka", nil},
		{"KAFKA_TLS_KEY_FILE", "kafka-tls-key-file", str(&c.KafkaTLSKeyFile), "client key (PEM) for mutual TLS to Kafka", nil},
		{"KAFKA_SASL_MECHANISM", "kafka-sasl-mechanism", str(&c.KafkaSASLMechanism), "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL", nil},
		{"KAFKA_SASL_USERNAME", "kafka-sasl-username", str(&c.KafkaSASLUsername), "SASL user", nil},
		{"KAFKA_SASL_PASSWORD", "", secret(&c.KafkaSASLPassword), "SASL password (environment only)", hidden},
		{"KAFKA_SASL_PASSWORD_FILE", "kafka-sasl-password-file", str(&c.KafkaSASLPasswordFile), "file holding the SASL password", nil},
		{"ELASTICSEARCH_API_KEY", "", secret(&c.ElasticsearchAPIKey), "search cluster API key, base64 id:key (environment only)", hidden},
		{"ELASTICSEARCH_API_KEY_FILE", "elasticsearch-api-key-file", str(&c.ElasticsearchAPIKeyFile), "file holding the search cluster API key", nil},
		{"ELASTICSEARCH_USERNAME", "elasticsearch-username", str(&c.ElasticsearchUsername), "search cluster basic-auth user", nil},
		{"ELASTICSEARCH_PASSWORD", "", secret(&c.ElasticsearchPassword), "search cluster basic-auth password (environment only)", hidden},
		{"ELASTICSEARCH_PASSWORD_FILE", "elasticsearch-password-file", str(&c.ElasticsearchPasswordFile), "file holding the search cluster password", nil},
		{"ELASTICSEARCH_CA_FILE", "elasticsearch-ca-file", str(&c.ElasticsearchCAFile), "PEM CA bundle of the search cluster's certificate", nil},
		{"ELASTICSEARCH_CA_FINGERPRINT", "elasticsearch-ca-fingerprint", str(&c.ElasticsearchCAFingerprint), "SHA-256 fingerprint (hex) of a certificate in the search cluster's chain", nil},
		{"ADMIN_TOKEN", "", secret(&c.AdminToken), "bearer token the gRPC admin services require; the CLI sends it (environment only)", hidden},
		{"ADMIN_TOKEN_FILE", "admin-token-file", str(&c.AdminTokenFile), "file holding the admin token", nil},
		{"GRPC_TLS_CERT_FILE", "grpc-tls-cert-file", str(&c.GRPCTLSCertFile), "admin port server certificate (PEM)", nil},
		{"GRPC_TLS_KEY_FILE", "grpc-tls-key-file", str(&c.GRPCTLSKeyFile), "admin port server key (PEM)", nil},
		{"GRPC_TLS_CLIENT_CA_FILE", "grpc-tls-client-ca-file", str(&c.GRPCTLSClientCAFile), "CA bundle of the client certificates the admin port requires (mutual TLS)", nil},
		{"GRPC_CLIENT_TLS", "grpc-client-tls", boolean(&c.GRPCClientTLS), "CLI: reach GRPC_ADDR over TLS with the system roots", nil},
		{"GRPC_CLIENT_TLS_CA_FILE", "grpc-client-tls-ca-file", str(&c.GRPCClientTLSCAFile), "CLI: CA bundle of the admin port's certificate", nil},
		{"GRPC_CLIENT_TLS_CERT_FILE", "grpc-client-tls-cert-file", str(&c.GRPCClientTLSCertFile), "CLI: client certificate (PEM) for an admin port with mutual TLS", nil},
		{"GRPC_CLIENT_TLS_KEY_FILE", "grpc-client-tls-key-file", str(&c.GRPCClientTLSKeyFile), "CLI: client key (PEM) for an admin port with mutual TLS", nil},
		{"GRPC_CLIENT_TLS_SERVER_NAME", "grpc-client-tls-server-name", str(&c.GRPCClientTLSServerName), "CLI: name expected in the admin port's certificate", nil},
		{"HTTP_TLS_CERT_FILE", "http-tls-cert-file", str(&c.HTTPTLSCertFile), "REST API server certificate (PEM); serves HTTPS", nil},
		{"HTTP_TLS_KEY_FILE", "http-tls-key-file", str(&c.HTTPTLSKeyFile), "REST API server key (PEM)", nil},
		{"METRICS_ADDR", "metrics-addr", str(&c.MetricsAddr), "serve /metrics here instead of on HTTP_ADDR (also for relay and project)", nil},
		{"CONSOLE_ADDR", "console-addr", emptyDisables(&c.ConsoleAddr), "operations console listen address of serve; empty disables it", nil},
		{"CONSOLE_TLS_CERT_FILE", "console-tls-cert-file", str(&c.ConsoleTLSCertFile), "console server certificate (PEM); serves HTTPS", nil},
		{"CONSOLE_TLS_KEY_FILE", "console-tls-key-file", str(&c.ConsoleTLSKeyFile), "console server key (PEM)", nil},
		{"CONSOLE_SAMPLE_INTERVAL", "console-sample-interval", duration(&c.ConsoleSampleInterval), "how often the console samples the status for its charts (1s..10m; 360 samples kept)", nil},
	}
}

// hidden shows a secret's raw value in an error: never the value itself.
func hidden(string) string { return service.Redacted }

// settings is the bound table of one command line.
type settings struct {
	list []setting
	fs   *pflag.FlagSet
	// raw is the value each variable was set to, by env name, for error messages.
	raw map[string]string
	// fromFlag is true for variables a flag set.
	fromFlag map[string]bool
}

// bindSettings starts c from its defaults (service.Config.SetDefaults owns them) and
// declares every setting's flag on fs with that default.
func bindSettings(fs *pflag.FlagSet, c *service.Config) *settings {
	c.SetDefaults()
	if c.ConsoleAddr == "" {
		// Only the command line turns the console on by default: see service.Config.ConsoleAddr.
		c.ConsoleAddr = service.DefaultConsoleAddr
	}
	s := &settings{list: settingsOf(c), fs: fs}
	for _, st := range s.list {
		if st.flag == "" {
			continue
		}
		fs.Var(st.value, st.flag, st.usage+" (env "+st.env+")")
		if st.value.Type() == "bool" {
			fs.Lookup(st.flag).NoOptDefVal = "true"
		}
	}
	return s
}

// apply reads the environment into every setting no flag set, then validates the result.
// It reports every bad variable at once, each as a *service.SettingError with the value as
// it was written (redacted for variables that can hold credentials). An empty variable
// counts as unset, as in most deployment tools.
func (s *settings) apply(lookup func(string) (string, bool)) error {
	s.raw, s.fromFlag = map[string]string{}, map[string]bool{}
	var errs []error
	for _, st := range s.list {
		if f := s.flagOf(st); f != nil && f.Changed {
			s.raw[st.env], s.fromFlag[st.env] = f.Value.String(), true
			continue
		}
		v, ok := lookup(st.env)
		if !ok || (v == "" && !allowsEmpty(st.value)) {
			continue
		}
		s.raw[st.env] = v
		if err := st.value.Set(v); err != nil {
			errs = append(errs, &service.SettingError{Var: st.env, Value: st.display(v), Want: err.Error()})
		}
	}
	return errors.Join(errs...)
}

// flagOf is the flag of st, nil for a setting that has none.
func (s *settings) flagOf(st setting) *pflag.Flag {
	if st.flag == "" {
		return nil
	}
	return s.fs.Lookup(st.flag)
}

func (st setting) display(raw string) string {
	if st.show != nil {
		return st.show(raw)
	}
	return raw
}

// validate reads the secrets given as files, runs service.Config.Validate and puts the raw
// value of each variable into its error, so OUTBOX_LANES=" 0x10" is reported as written, not
// as the value it parsed to.
func (s *settings) validate(c *service.Config) error {
	err := errors.Join(c.ReadSecretFiles(), c.Validate())
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range unjoin(err) {
		var se *service.SettingError
		if errors.As(e, &se) {
			for _, st := range s.list {
				if st.env != se.Var {
					continue
				}
				if raw, ok := s.raw[st.env]; ok {
					se.Value = st.display(raw)
				}
				if s.fromFlag[st.env] {
					se.Var = "--" + st.flag
				}
			}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// unjoin returns the errors an errors.Join holds, nested joins flattened, or err alone.
func unjoin(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, unjoin(e)...)
	}
	return out
}

// envLookup is the process environment.
func envLookup(k string) (string, bool) { return os.LookupEnv(k) }

// value is a pflag.Value over a field with a strict parser: unlike pflag's own int (which
// takes 0x10 and 070), only what the type's documented syntax allows is accepted.
type value[T any] struct {
	p     *T
	parse func(string) (T, error)
	show  func(T) string
	typ   string
}

func (v *value[T]) String() string {
	if v.p == nil {
		return ""
	}
	return v.show(*v.p)
}

func (v *value[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}

func (v *value[T]) Type() string { return v.typ }

func str(p *string) pflag.Value {
	return &value[string]{p: p, parse: func(s string) (string, error) { return s, nil }, show: func(s string) string { return s }, typ: "string"}
}

func integer(p *int) pflag.Value {
	return &value[int]{p: p, typ: "int", show: strconv.Itoa, parse: func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return 0, errors.New("want an integer, this one is out of range")
		}
		if err != nil {
			return 0, errors.New("want a decimal integer")
		}
		return n, nil
	}}
}

func duration(p *time.Duration) pflag.Value {
	return &value[time.Duration]{p: p, typ: "duration", show: time.Duration.String, parse: func(s string) (time.Duration, error) {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, errors.New("want a duration with a unit, such as 500ms, 30s or 5m")
		}
		return d, nil
	}}
}

// boolean is strictly "true" or "false": strconv.ParseBool's 1, t and TRUE look like typos
// in a deployment file more often than they are meant.
func boolean(p *bool) pflag.Value {
	return &value[bool]{p: p, typ: "bool", show: strconv.FormatBool, parse: func(s string) (bool, error) {
		switch s {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return false, errors.New(`want "true" or "false"`)
	}}
}

// intOrAuto is "auto" (nil) or a decimal integer, for settings whose default adapts to the
// cluster.
func intOrAuto(p **int) pflag.Value {
	show := func(v *int) string {
		if v == nil {
			return "auto"
		}
		return strconv.Itoa(*v)
	}
	var n int
	parseInt := integer(&n)
	return &value[*int]{p: p, typ: "int-or-auto", show: show, parse: func(s string) (*int, error) {
		if s == "auto" {
			return nil, nil
		}
		if err := parseInt.Set(s); err != nil {
			return nil, errors.New(`want "auto" or a decimal integer`)
		}
		v := n
		return &v, nil
	}}
}

// secret is a credential; its String never shows it.
func secret(p *service.Secret) pflag.Value {
	return &value[service.Secret]{p: p, typ: "secret", show: service.Secret.String, parse: func(s string) (service.Secret, error) {
		return service.NewSecret(s), nil
	}}
}

// emptyValue is a string setting whose empty value means something (off) instead of unset.
type emptyValue struct{ pflag.Value }

// AllowsEmpty marks the setting for apply.
func (emptyValue) AllowsEmpty() bool { return true }

// emptyDisables is a string setting that an empty variable sets to empty, turning off what
// it addresses, where every other empty variable counts as unset.
func emptyDisables(p *string) pflag.Value { return emptyValue{str(p)} }

// allowsEmpty reports whether an empty variable sets v rather than leaving its default.
func allowsEmpty(v pflag.Value) bool {
	e, ok := v.(interface{ AllowsEmpty() bool })
	return ok && e.AllowsEmpty()
}

// list is a comma-separated list; blanks around items and empty items are dropped.
func list(p *[]string) pflag.Value {
	return &value[[]string]{p: p, typ: "strings", show: func(l []string) string { return strings.Join(l, ",") }, parse: func(s string) ([]string, error) {
		var out []string
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
		return out, nil
	}}
}

// configError marks the configuration's errors as bad usage (exit 2), one line each.
func configError(err error) error {
	if err == nil {
		return nil
	}
	var lines []error
	for _, e := range unjoin(err) {
		lines = append(lines, fmt.Errorf("configuration: %w", e))
	}
	return usageError{errors.Join(lines...)}
}

// Package service runs the catalog's roles (API, relay, projector, admin) in one process or
// one role per process, and owns what a process needs around them: configuration, logging
// and graceful shutdown.
package service

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/marketplace/catalog/api/envelope"
)

// Config is the whole configuration of a catalog process. Every field has an environment
// variable (docs/ARCHITECTURE.md, "Public contract") and a flag of the same meaning; flags win.
type Config struct {
	// DatabaseURL is the PostgreSQL system of record (DATABASE_URL).
	DatabaseURL string
	// KafkaBrokers are the Kafka bootstrap brokers (KAFKA_BROKERS). Empty starts the embedded
	// broker on EmbeddedKafkaAddr.
	KafkaBrokers []string
	// EmbeddedKafkaAddr is where the embedded broker listens (EMBEDDED_KAFKA_ADDR).
	EmbeddedKafkaAddr string
	// ElasticsearchURL is the search cluster (ELASTICSEARCH_URL); empty uses the embedded engine.
	ElasticsearchURL string
	// ElasticsearchCompat is "" or "opensearch" (ELASTICSEARCH_COMPAT): an explicit opt-in that
	// lets go-elasticsearch talk to an OpenSearch server.
	ElasticsearchCompat string
	// DataDir holds local state of embedded components (CATALOG_DATA_DIR).
	DataDir string
	// HTTPAddr is the REST API's listen address (HTTP_ADDR).
	HTTPAddr string
	// GRPCAddr is the admin gRPC port's listen address (GRPC_ADDR).
	GRPCAddr string
	// SearchAlias is the read model's alias; index names derive from it (SEARCH_ALIAS).
	SearchAlias string
	// ProductEventsTopic is the topic of product events (PRODUCT_EVENTS_TOPIC).
	ProductEventsTopic string
	// DLQTopic is the dead-letter topic (DLQ_TOPIC).
	DLQTopic string
	// ProjectorGroup is the projector's Kafka consumer group (PROJECTOR_GROUP). Replicas of
	// the projector share it; a second read model would use its own.
	ProjectorGroup string
	// ProjectorSessionTimeout is how long the projector's consumer group waits for a
	// replica that stopped heartbeating before its partitions go to the others
	// (PROJECTOR_SESSION_TIMEOUT): how long a killed replica's partitions stall. The broker
	// must allow it (group.min.session.timeout.ms, 6s by default).
	ProjectorSessionTimeout time.Duration
	// SearchRefreshInterval is index.refresh_interval of new read-model indices
	// (SEARCH_REFRESH_INTERVAL): the longest a write takes to become searchable.
	SearchRefreshInterval time.Duration
	// TopicPartitions is the partition count used when the service creates its topics
	// (TOPIC_PARTITIONS); it bounds how many partitions the projector processes in parallel.
	TopicPartitions int
	// TopicReplicationFactor is the replication factor of topics the service creates
	// (TOPIC_REPLICATION_FACTOR); 0 takes the brokers' default.replication.factor. Existing
	// topics are never changed.
	TopicReplicationFactor int
	// TopicMinInsyncReplicas is min.insync.replicas of topics the service creates
	// (TOPIC_MIN_INSYNC_REPLICAS): with acks=all, a write is acknowledged only once this
	// many replicas have it. 0 takes the brokers' default.
	TopicMinInsyncReplicas int
	// SearchShards is index.number_of_shards of new read-model indices (SEARCH_SHARDS); a
	// change reaches the live index through a rebuild.
	SearchShards int
	// SearchReplicas is index.number_of_replicas of read-model indices (SEARCH_REPLICAS); nil
	// ("auto") expands from 0 to 1 replica with the number of data nodes.
	SearchReplicas *int
	// Roles are the roles `catalog serve` runs (CATALOG_ROLES): api, relay, projector and
	// admin; all of them by default.
	Roles []string
	// OutboxLanes is the number of outbox lanes (OUTBOX_LANES); writers and relays must agree.
	OutboxLanes int
	// RelayPollInterval is the relay's fallback poll interval (RELAY_POLL_INTERVAL); commits
	// wake it earlier through LISTEN/NOTIFY.
	RelayPollInterval time.Duration
	// RelayBatchSize is how many outbox rows a relay lane reads at once (RELAY_BATCH_SIZE).
	RelayBatchSize int
	// OutboxRetention is how long relayed outbox rows are kept before the relay role deletes
	// them (OUTBOX_RETENTION); useful for forensics, costly if unbounded.
	OutboxRetention time.Duration
	// CloudEventsSource, when set, adds CloudEvents binary-mode headers (ce_specversion,
	// ce_id, ce_type, ce_source, ce_time, ce_subject, ce_dataschema, content-type) to every
	// product event beside its own headers, with this URI-reference as ce_source
	// (CLOUDEVENTS_SOURCE); empty, the default, adds none.
	CloudEventsSource string
	// LogFormat is "text" or "json" (LOG_FORMAT).
	LogFormat string
	// LogLevel is debug, info, warn or error (LOG_LEVEL).
	LogLevel string
	// ShutdownTimeout bounds graceful shutdown after SIGINT/SIGTERM (SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration

	// KafkaTLS turns TLS to the brokers on with the system roots (KAFKA_TLS); any of the
	// KAFKA_TLS_*_FILE settings turns it on as well.
	KafkaTLS bool
	// KafkaTLSCAFile is a PEM bundle of the CAs that sign the brokers' certificates
	// (KAFKA_TLS_CA_FILE), for clusters whose CA is not in the system roots.
	KafkaTLSCAFile string
	// KafkaTLSCertFile and KafkaTLSKeyFile are the client certificate and key of mutual TLS
	// (KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE); set both or neither.
	KafkaTLSCertFile, KafkaTLSKeyFile string
	// KafkaSASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (KAFKA_SASL_MECHANISM);
	// empty means no SASL.
	KafkaSASLMechanism string
	// KafkaSASLUsername is the SASL user (KAFKA_SASL_USERNAME).
	KafkaSASLUsername string
	// KafkaSASLPassword is the SASL password (KAFKA_SASL_PASSWORD, or read from
	// KAFKA_SASL_PASSWORD_FILE).
	KafkaSASLPassword Secret
	// KafkaSASLPasswordFile names a file holding the SASL password (KAFKA_SASL_PASSWORD_FILE).
	KafkaSASLPasswordFile string

	// ElasticsearchAPIKey is the search cluster's API key, the base64 "id:key" form Elastic
	// prints (ELASTICSEARCH_API_KEY, or read from ELASTICSEARCH_API_KEY_FILE).
	ElasticsearchAPIKey Secret
	// ElasticsearchAPIKeyFile names a file holding the API key (ELASTICSEARCH_API_KEY_FILE).
	ElasticsearchAPIKeyFile string
	// ElasticsearchUsername is the basic-auth user of the search cluster
	// (ELASTICSEARCH_USERNAME); an alternative to the API key.
	ElasticsearchUsername string
	// ElasticsearchPassword is the basic-auth password (ELASTICSEARCH_PASSWORD, or read from
	// ELASTICSEARCH_PASSWORD_FILE).
	ElasticsearchPassword Secret
	// ElasticsearchPasswordFile names a file holding the password (ELASTICSEARCH_PASSWORD_FILE).
	ElasticsearchPasswordFile string
	// ElasticsearchCAFile is a PEM bundle of the CAs that sign the search cluster's
	// certificate (ELASTICSEARCH_CA_FILE).
	ElasticsearchCAFile string
	// ElasticsearchCAFingerprint pins the search cluster's certificate by the SHA-256
	// fingerprint of a certificate in its chain, as Elasticsearch prints it at first start
	// (ELASTICSEARCH_CA_FINGERPRINT; hex, colons allowed).
	ElasticsearchCAFingerprint string

	// AdminToken, when set, is required as "authorization: Bearer <token>" on every call of the
	// gRPC admin services; the CLI sends it (ADMIN_TOKEN, or read from ADMIN_TOKEN_FILE).
	AdminToken Secret
	// AdminTokenFile names a file holding the admin token (ADMIN_TOKEN_FILE).
	AdminTokenFile string
	// GRPCTLSCertFile and GRPCTLSKeyFile serve the admin port over TLS (GRPC_TLS_CERT_FILE,
	// GRPC_TLS_KEY_FILE); set both or neither.
	GRPCTLSCertFile, GRPCTLSKeyFile string
	// GRPCTLSClientCAFile, when set, makes the admin port require a client certificate
	// signed by one of these CAs: mutual TLS (GRPC_TLS_CLIENT_CA_FILE).
	GRPCTLSClientCAFile string
	// GRPCClientTLS makes the CLI reach GRPC_ADDR over TLS with the system roots
	// (GRPC_CLIENT_TLS); any GRPC_CLIENT_TLS_* setting turns it on as well.
	GRPCClientTLS bool
	// GRPCClientTLSCAFile is the CA bundle the CLI verifies the admin port's certificate with
	// (GRPC_CLIENT_TLS_CA_FILE).
	GRPCClientTLSCAFile string
	// GRPCClientTLSCertFile and GRPCClientTLSKeyFile are the CLI's certificate and key for an
	// admin port that requires mutual TLS (GRPC_CLIENT_TLS_CERT_FILE, GRPC_CLIENT_TLS_KEY_FILE).
	GRPCClientTLSCertFile, GRPCClientTLSKeyFile string
	// GRPCClientTLSServerName is the name the CLI expects in the admin port's certificate
	// when GRPC_ADDR's host is not in it (GRPC_CLIENT_TLS_SERVER_NAME).
	GRPCClientTLSServerName string

	// HTTPTLSCertFile and HTTPTLSKeyFile serve the REST API over TLS (HTTP_TLS_CERT_FILE,
	// HTTP_TLS_KEY_FILE), for deployments without a TLS-terminating proxy.
	HTTPTLSCertFile, HTTPTLSKeyFile string
	// MetricsAddr, when set, serves /metrics on its own listener instead of HTTP_ADDR
	// (METRICS_ADDR); it also gives `catalog relay` and `catalog project` a metrics endpoint.
	MetricsAddr string
	// ConsoleAddr serves the operations console of `catalog serve` (CONSOLE_ADDR); empty
	// disables it. The command line defaults it to DefaultConsoleAddr; a Config built in code
	// starts with it off, so tests and embeddings never bind a fixed port by accident.
	ConsoleAddr string
	// ConsoleSampleInterval is how often the console samples the status for its charts
	// (CONSOLE_SAMPLE_INTERVAL); the charts keep the last 360 samples.
	ConsoleSampleInterval time.Duration
	// ConsoleTLSCertFile and ConsoleTLSKeyFile serve the console over HTTPS
	// (CONSOLE_TLS_CERT_FILE, CONSOLE_TLS_KEY_FILE), which a console beyond loopback wants:
	// the login's token and the session cookie cross the network.
	ConsoleTLSCertFile, ConsoleTLSKeyFile string
}

// Defaults of the public contract (docs/ARCHITECTURE.md, "Public contract").
const (
	DefaultDatabaseURL       = "postgres://postgres@127.0.0.1:5432/catalog?sslmode=disable"
	DefaultEmbeddedKafkaAddr = "127.0.0.1:9092"
	DefaultHTTPAddr          = "127.0.0.1:8080"
	// DefaultConsoleAddr is the console's address on the command line: loopback, like the
	// admin port, because the console starts rebuilds and replays dead letters.
	DefaultConsoleAddr        = "127.0.0.1:8081"
	DefaultGRPCAddr           = "127.0.0.1:9090"
	DefaultDataDir            = "./data"
	DefaultSearchAlias        = "product_search"
	DefaultProductEventsTopic = "product.events"
	DefaultDLQTopic           = "dlq.product.events"
	DefaultProjectorGroup     = "catalog-projector"
	// DefaultProjectorSessionTimeout is the smallest session timeout a Kafka broker accepts
	// by default: a killed projector's partitions move on within about 8 s.
	DefaultProjectorSessionTimeout = 6 * time.Second
	DefaultSearchRefreshInterval   = time.Second
	DefaultTopicPartitions         = 12
	DefaultSearchShards            = 1
	DefaultOutboxLanes             = 16
	DefaultRelayPollInterval       = 100 * time.Millisecond
	DefaultRelayBatchSize          = 1000
	DefaultOutboxRetention         = 24 * time.Hour
	DefaultLogFormat               = "text"
	DefaultLogLevel                = "info"
	DefaultShutdownTimeout         = 30 * time.Second
	// DefaultConsoleSampleInterval makes the console's 360 chart samples the last hour.
	DefaultConsoleSampleInterval = 10 * time.Second
)

// SetDefaults fills every empty field with its default. It is for configurations built in
// code (tests, embedding): the command line starts from a defaulted Config and then applies
// the environment, so an explicit 0 there stays 0 and Validate rejects it.
func (c *Config) SetDefaults() {
	def := func(p *string, v string) {
		if strings.TrimSpace(*p) == "" {
			*p = v
		}
	}
	def(&c.DatabaseURL, DefaultDatabaseURL)
	def(&c.EmbeddedKafkaAddr, DefaultEmbeddedKafkaAddr)
	def(&c.DataDir, DefaultDataDir)
	def(&c.HTTPAddr, DefaultHTTPAddr)
	def(&c.GRPCAddr, DefaultGRPCAddr)
	def(&c.SearchAlias, DefaultSearchAlias)
	def(&c.ProductEventsTopic, DefaultProductEventsTopic)
	def(&c.DLQTopic, DefaultDLQTopic)
	def(&c.ProjectorGroup, DefaultProjectorGroup)
	def(&c.LogFormat, DefaultLogFormat)
	def(&c.LogLevel, DefaultLogLevel)
	zero := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	zero(&c.SearchRefreshInterval, DefaultSearchRefreshInterval)
	zero(&c.ProjectorSessionTimeout, DefaultProjectorSessionTimeout)
	zero(&c.RelayPollInterval, DefaultRelayPollInterval)
	zero(&c.OutboxRetention, DefaultOutboxRetention)
	zero(&c.ShutdownTimeout, DefaultShutdownTimeout)
	zero(&c.ConsoleSampleInterval, DefaultConsoleSampleInterval)
	if c.TopicPartitions == 0 {
		c.TopicPartitions = DefaultTopicPartitions
	}
	if c.SearchShards == 0 {
		c.SearchShards = DefaultSearchShards
	}
	if len(c.Roles) == 0 {
		c.Roles = slices.Clone(AllRoles)
	}
	if c.OutboxLanes == 0 {
		c.OutboxLanes = DefaultOutboxLanes
	}
	if c.RelayBatchSize == 0 {
		c.RelayBatchSize = DefaultRelayBatchSize
	}
}

// SettingError is one invalid setting: the environment variable, the value it had and what
// it must be. Validate returns one per bad variable (joined), so the command line can print
// one line per variable and show the value exactly as the operator wrote it.
type SettingError struct {
	// Var is the environment variable, such as OUTBOX_LANES.
	Var string
	// Value is the offending value; a secret is never put here, only a redacted form.
	Value string
	// Want says what the value must be.
	Want string
}

// Error reads VAR="value": what it must be.
func (e *SettingError) Error() string { return fmt.Sprintf("%s=%q: %s", e.Var, e.Value, e.Want) }

// Validate reports every invalid setting at once, one *SettingError per variable.
func (c Config) Validate() error {
	var errs []error
	bad := func(name string, v any, want string) {
		errs = append(errs, &SettingError{Var: name, Value: fmt.Sprint(v), Want: want})
	}
	addr := func(name, v string) {
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad(name, v, "want host:port")
		}
	}
	addr("HTTP_ADDR", c.HTTPAddr)
	addr("GRPC_ADDR", c.GRPCAddr)
	addr("EMBEDDED_KAFKA_ADDR", c.EmbeddedKafkaAddr)
	for _, b := range c.KafkaBrokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			bad("KAFKA_BROKERS", strings.Join(c.KafkaBrokers, ","), fmt.Sprintf("want host:port[,host:port...]; %q is not host:port", b))
			break
		}
	}
	if !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") {
		bad("DATABASE_URL", RedactURL(c.DatabaseURL), "want a postgres:// or postgresql:// URL")
	}
	oneOf := func(name, v string, allowed ...string) {
		if !slices.Contains(allowed, v) {
			bad(name, v, "want one of "+strings.Join(quoteAll(allowed), ", "))
		}
	}
	oneOf("ELASTICSEARCH_COMPAT", c.ElasticsearchCompat, "", "opensearch")
	if c.CloudEventsSource != "" {
		if err := envelope.ValidateCloudEventsSource(c.CloudEventsSource); err != nil {
			bad("CLOUDEVENTS_SOURCE", c.CloudEventsSource, "want empty (no CloudEvents headers) or a URI-reference such as /catalog")
		}
	}
	oneOf("LOG_FORMAT", c.LogFormat, "text", "json")
	oneOf("LOG_LEVEL", c.LogLevel, "debug", "info", "warn", "error")
	intIn := func(name string, v, lo, hi int) {
		if v < lo || v > hi {
			bad(name, v, fmt.Sprintf("want an integer in %d..%d", lo, hi))
		}
	}
	intIn("TOPIC_PARTITIONS", c.TopicPartitions, 1, 1000)
	intIn("OUTBOX_LANES", c.OutboxLanes, 1, 64)
	intIn("RELAY_BATCH_SIZE", c.RelayBatchSize, 1, 100_000)
	intIn("SEARCH_SHARDS", c.SearchShards, 1, 1024)
	if c.SearchReplicas != nil {
		intIn("SEARCH_REPLICAS", *c.SearchReplicas, 0, 32)
	}
	c.validateReplication(bad)
	c.validateRoles(bad)
	durIn := func(name string, v, lo, hi time.Duration) {
		switch {
		case hi == 0 && v < lo:
			bad(name, v, fmt.Sprintf("want a duration of at least %s", lo))
		case hi != 0 && (v < lo || v > hi):
			bad(name, v, fmt.Sprintf("want a duration in %s..%s", lo, hi))
		}
	}
	durIn("RELAY_POLL_INTERVAL", c.RelayPollInterval, time.Millisecond, time.Minute)
	durIn("OUTBOX_RETENTION", c.OutboxRetention, time.Minute, 0)
	durIn("SEARCH_REFRESH_INTERVAL", c.SearchRefreshInterval, time.Millisecond, time.Hour)
	durIn("SHUTDOWN_TIMEOUT", c.ShutdownTimeout, time.Second, time.Hour)
	durIn("CONSOLE_SAMPLE_INTERVAL", c.ConsoleSampleInterval, time.Second, 10*time.Minute)
	durIn("PROJECTOR_SESSION_TIMEOUT", c.ProjectorSessionTimeout, time.Second, 30*time.Minute)
	for _, n := range []struct{ name, v string }{{"SEARCH_ALIAS", c.SearchAlias}, {"PRODUCT_EVENTS_TOPIC", c.ProductEventsTopic},
		{"DLQ_TOPIC", c.DLQTopic}, {"PROJECTOR_GROUP", c.ProjectorGroup}} {
		if strings.TrimSpace(n.v) == "" || strings.ContainsAny(n.v, " ,/\\*?\"<>|#") {
			bad(n.name, n.v, `want a non-empty name without spaces or any of ,/\*?"<>|#`)
		}
	}
	c.validateSecurity(bad)
	return errors.Join(errs...)
}

// RedactURL hides the password of a URL, so that a configuration error can show which URL
// was meant without printing its credentials. A value that does not parse as a URL is not
// shown at all: it may be a secret pasted into the wrong variable.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL, not shown)"
	}
	return u.Redacted()
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

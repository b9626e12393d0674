// Package service runs the catalog's roles (API, relay, projector, admin) in one process or
// one role per process, and owns what a process needs around them: configuration, logging
// and graceful shutdown.
package service

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Config is the whole configuration of a catalog process. Every field has an environment
// variable (ARCHITECTURE §6) and a flag of the same meaning; flags win.
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
	// SearchRefreshInterval is index.refresh_interval of new read-model indices
	// (SEARCH_REFRESH_INTERVAL): the longest a write takes to become searchable.
	SearchRefreshInterval time.Duration
	// TopicPartitions is the partition count used when the service creates its topics
	// (TOPIC_PARTITIONS); it bounds how many partitions the projector processes in parallel.
	TopicPartitions int
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
	// LogFormat is "text" or "json" (LOG_FORMAT).
	LogFormat string
	// LogLevel is debug, info, warn or error (LOG_LEVEL).
	LogLevel string
	// ShutdownTimeout bounds graceful shutdown after SIGINT/SIGTERM (SHUTDOWN_TIMEOUT).
	ShutdownTimeout time.Duration
}

// Defaults of the public contract (ARCHITECTURE §6).
const (
	DefaultDatabaseURL        = "postgres://postgres@127.0.0.1:5432/catalog?sslmode=disable"
	DefaultEmbeddedKafkaAddr  = "127.0.0.1:9092"
	DefaultHTTPAddr           = "127.0.0.1:8080"
	DefaultGRPCAddr           = "127.0.0.1:9090"
	DefaultDataDir            = "./data"
	DefaultSearchAlias        = "product_search"
	DefaultProductEventsTopic = "product.events"
	DefaultDLQTopic           = "dlq.product.events"
	DefaultProjectorGroup     = "catalog-projector"
)

// SetDefaults fills every empty field with its default.
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
	if c.SearchRefreshInterval == 0 {
		c.SearchRefreshInterval = time.Second
	}
	def(&c.LogFormat, "text")
	def(&c.LogLevel, "info")
	if c.TopicPartitions == 0 {
		c.TopicPartitions = 12
	}
	if c.OutboxLanes == 0 {
		c.OutboxLanes = 16
	}
	if c.RelayPollInterval == 0 {
		c.RelayPollInterval = 100 * time.Millisecond
	}
	if c.RelayBatchSize == 0 {
		c.RelayBatchSize = 1000
	}
	if c.OutboxRetention == 0 {
		c.OutboxRetention = 24 * time.Hour
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
}

// Validate reports every invalid setting at once, naming the environment variable.
func (c Config) Validate() error {
	var errs []error
	addr := func(name, v string) {
		if _, _, err := net.SplitHostPort(v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q is not host:port", name, v))
		}
	}
	addr("HTTP_ADDR", c.HTTPAddr)
	addr("GRPC_ADDR", c.GRPCAddr)
	addr("EMBEDDED_KAFKA_ADDR", c.EmbeddedKafkaAddr)
	for _, b := range c.KafkaBrokers {
		addr("KAFKA_BROKERS", b)
	}
	if !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") {
		errs = append(errs, errors.New("DATABASE_URL must be a postgres:// URL"))
	}
	switch c.ElasticsearchCompat {
	case "", "opensearch":
	default:
		errs = append(errs, fmt.Errorf("ELASTICSEARCH_COMPAT=%q: want empty or \"opensearch\"", c.ElasticsearchCompat))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("LOG_FORMAT=%q: want text or json", c.LogFormat))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", c.LogLevel))
	}
	if c.TopicPartitions < 1 || c.TopicPartitions > 1000 {
		errs = append(errs, fmt.Errorf("TOPIC_PARTITIONS=%d: want 1..1000", c.TopicPartitions))
	}
	if c.OutboxLanes < 1 || c.OutboxLanes > 64 {
		errs = append(errs, fmt.Errorf("OUTBOX_LANES=%d: want 1..64", c.OutboxLanes))
	}
	if c.RelayPollInterval <= 0 || c.RelayPollInterval > time.Minute {
		errs = append(errs, fmt.Errorf("RELAY_POLL_INTERVAL=%s: want >0 and <=1m", c.RelayPollInterval))
	}
	if c.OutboxRetention < time.Minute {
		errs = append(errs, fmt.Errorf("OUTBOX_RETENTION=%s: want at least 1m", c.OutboxRetention))
	}
	if c.RelayBatchSize < 1 || c.RelayBatchSize > 100_000 {
		errs = append(errs, fmt.Errorf("RELAY_BATCH_SIZE=%d: want 1..100000", c.RelayBatchSize))
	}
	if c.SearchRefreshInterval < 0 || c.SearchRefreshInterval > time.Hour {
		errs = append(errs, fmt.Errorf("SEARCH_REFRESH_INTERVAL=%s: want >0 and <=1h", c.SearchRefreshInterval))
	}
	for name, v := range map[string]string{"SEARCH_ALIAS": c.SearchAlias, "PRODUCT_EVENTS_TOPIC": c.ProductEventsTopic,
		"DLQ_TOPIC": c.DLQTopic, "PROJECTOR_GROUP": c.ProjectorGroup} {
		if strings.TrimSpace(v) == "" || strings.ContainsAny(v, " ,/\\*?\"<>|#") {
			errs = append(errs, fmt.Errorf("%s=%q is not a valid name", name, v))
		}
	}
	return errors.Join(errs...)
}

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/marketplace/catalog/service"
)

func newRootCmd() *cobra.Command {
	cfg := &service.Config{}
	root := &cobra.Command{
		Use:   "catalog",
		Short: "Product catalog: Postgres system of record, outbox relay to Kafka, search read models",
		Long: `catalog runs the product domain of a marketplace as CQRS on an event log.

Every setting comes from the environment (ARCHITECTURE §6 names) and can be overridden by the
flag of the same meaning. Run 'catalog <command> --help' for a command's flags.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			cfg.SetDefaults()
			if err := cfg.Validate(); err != nil {
				return usageError{fmt.Errorf("configuration: %w", err)}
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	bindFlags(root.PersistentFlags(), cfg)
	root.AddCommand(newMigrateCmd(cfg), newServeCmd(cfg), newRelayCmd(cfg), newProjectCmd(cfg), newRebuildCmd(cfg), newIndexCmd(cfg), newDLQCmd(cfg), newStatusCmd(cfg), newVerifyCmd(cfg))
	return root
}

// bindFlags declares every configuration flag with its environment variable as the default.
func bindFlags(fs *pflag.FlagSet, c *service.Config) {
	str := func(p *string, name, env, def, usage string) {
		fs.StringVar(p, name, envOr(env, def), usage+" (env "+env+")")
	}
	str(&c.DatabaseURL, "database-url", "DATABASE_URL", service.DefaultDatabaseURL, "PostgreSQL URL")
	fs.StringSliceVar(&c.KafkaBrokers, "kafka-brokers", splitList(os.Getenv("KAFKA_BROKERS")), "Kafka bootstrap brokers; empty starts the embedded broker (env KAFKA_BROKERS)")
	str(&c.EmbeddedKafkaAddr, "embedded-kafka-addr", "EMBEDDED_KAFKA_ADDR", service.DefaultEmbeddedKafkaAddr, "listen address of the embedded Kafka broker")
	str(&c.ElasticsearchURL, "elasticsearch-url", "ELASTICSEARCH_URL", "", "Elasticsearch URL; empty uses the embedded search engine")
	str(&c.ElasticsearchCompat, "elasticsearch-compat", "ELASTICSEARCH_COMPAT", "", `"opensearch" to accept an OpenSearch server`)
	str(&c.DataDir, "data-dir", "CATALOG_DATA_DIR", service.DefaultDataDir, "directory of embedded components' data")
	str(&c.HTTPAddr, "http-addr", "HTTP_ADDR", service.DefaultHTTPAddr, "REST API listen address")
	str(&c.GRPCAddr, "grpc-addr", "GRPC_ADDR", service.DefaultGRPCAddr, "gRPC admin listen address")
	str(&c.SearchAlias, "search-alias", "SEARCH_ALIAS", service.DefaultSearchAlias, "read model alias")
	str(&c.ProductEventsTopic, "product-events-topic", "PRODUCT_EVENTS_TOPIC", service.DefaultProductEventsTopic, "product events topic")
	str(&c.DLQTopic, "dlq-topic", "DLQ_TOPIC", service.DefaultDLQTopic, "dead-letter topic")
	str(&c.ProjectorGroup, "projector-group", "PROJECTOR_GROUP", service.DefaultProjectorGroup, "projector's Kafka consumer group")
	fs.DurationVar(&c.SearchRefreshInterval, "search-refresh-interval", envDuration("SEARCH_REFRESH_INTERVAL", time.Second), "refresh_interval of new read-model indices (env SEARCH_REFRESH_INTERVAL)")
	fs.IntVar(&c.TopicPartitions, "topic-partitions", envInt("TOPIC_PARTITIONS", 12), "partitions of topics the service creates (env TOPIC_PARTITIONS)")
	fs.IntVar(&c.OutboxLanes, "outbox-lanes", envInt("OUTBOX_LANES", 16), "outbox lanes; writers and relays must agree (env OUTBOX_LANES)")
	fs.DurationVar(&c.RelayPollInterval, "relay-poll-interval", envDuration("RELAY_POLL_INTERVAL", 100*time.Millisecond), "relay fallback poll interval; commits wake it earlier (env RELAY_POLL_INTERVAL)")
	fs.IntVar(&c.RelayBatchSize, "relay-batch-size", envInt("RELAY_BATCH_SIZE", 1000), "outbox rows a relay lane reads at once (env RELAY_BATCH_SIZE)")
	fs.DurationVar(&c.OutboxRetention, "outbox-retention", envDuration("OUTBOX_RETENTION", 24*time.Hour), "keep relayed outbox rows this long (env OUTBOX_RETENTION)")
	str(&c.LogFormat, "log-format", "LOG_FORMAT", "text", "log format: text or json")
	str(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "log level: debug, info, warn, error")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", envDuration("SHUTDOWN_TIMEOUT", 30*time.Second), "graceful shutdown limit (env SHUTDOWN_TIMEOUT)")
}

func envOr(k, def string) string {
	if v, ok := os.LookupEnv(k); ok {
		return v
	}
	return def
}

// envInt and envDuration keep a malformed variable visible: it becomes an invalid value that
// Validate reports with the variable's name, instead of silently falling back to the default.
func envInt(k string, def int) int {
	v, ok := os.LookupEnv(k)
	if !ok || v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

func envDuration(k string, def time.Duration) time.Duration {
	v, ok := os.LookupEnv(k)
	if !ok || v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return -1
	}
	return d
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func isFlagError(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") ||
		strings.HasPrefix(msg, "unknown shorthand flag") || strings.Contains(msg, "invalid argument")
}

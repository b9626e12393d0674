package wiring

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/metrics"
	"github.com/marketplace/catalog/internal/tlsfiles"
	"github.com/marketplace/catalog/ports/adminauth"
	grpcport "github.com/marketplace/catalog/ports/grpc"
	httpport "github.com/marketplace/catalog/ports/http"
	"github.com/marketplace/catalog/service"
)

// This file turns the security settings of service.Config into the clients' and servers'
// own: Kafka TLS and SASL, search cluster credentials and TLS, the admin token, TLS on the
// admin and REST ports. Secrets leave their service.Secret wrapper only here.

// kafkaStartupTimeout bounds the check a role makes of the Kafka cluster before it starts:
// long enough for a cluster that is still electing a controller, short enough that a
// misconfigured deployment fails in its first minute.
const kafkaStartupTimeout = 20 * time.Second

// KafkaSecurity loads the Kafka TLS and SASL settings, one Security for every client of the
// process (franz-go and Sarama alike).
func KafkaSecurity(cfg service.Config) (*kafka.Security, error) {
	return kafka.NewSecurity(kafka.SecurityConfig{
		TLS:           cfg.KafkaTLSEnabled(),
		CAFile:        cfg.KafkaTLSCAFile,
		CertFile:      cfg.KafkaTLSCertFile,
		KeyFile:       cfg.KafkaTLSKeyFile,
		SASLMechanism: cfg.KafkaSASLMechanism,
		Username:      cfg.KafkaSASLUsername,
		Password:      cfg.KafkaSASLPassword.Reveal(),
	})
}

// KafkaClientConfig is the adapter configuration for brokers with cfg's security.
func KafkaClientConfig(cfg service.Config, brokers []string) (kafka.Config, error) {
	sec, err := KafkaSecurity(cfg)
	if err != nil {
		return kafka.Config{}, err
	}
	return kafka.Config{Brokers: brokers, Security: sec}, nil
}

// provideKafka is the Kafka cluster the process talks to: the configured one, checked with
// the credentials before any role starts (a wrong password or CA stops the process here, with
// the setting to fix, instead of a consumer that retries forever), its topics created when
// missing; or the embedded broker this process starts. A process whose roles do not use
// Kafka gets the configuration unchecked.
func provideKafka(ctx context.Context, cfg service.Config, log *slog.Logger) (kafka.Config, func(), error) {
	topics := []kafka.TopicSpec{
		{Name: cfg.ProductEventsTopic, Partitions: int32(cfg.TopicPartitions), ReplicationFactor: int16(cfg.TopicReplicationFactor), MinInsyncReplicas: cfg.TopicMinInsyncReplicas},
		{Name: cfg.DLQTopic, Partitions: int32(cfg.TopicPartitions), ReplicationFactor: int16(cfg.TopicReplicationFactor), MinInsyncReplicas: cfg.TopicMinInsyncReplicas},
	}
	if len(cfg.KafkaBrokers) == 0 {
		b, err := kafka.StartEmbeddedBroker(kafka.EmbeddedConfig{Addr: cfg.EmbeddedKafkaAddr, Dir: filepath.Join(cfg.DataDir, "kafka")}, log, topics...)
		if err != nil {
			return kafka.Config{}, nil, err
		}
		return kafka.Config{Brokers: []string{b.Addr()}}, b.Close, nil
	}
	kc, err := KafkaClientConfig(cfg, cfg.KafkaBrokers)
	if err != nil {
		return kafka.Config{}, nil, err
	}
	if !cfg.NeedsKafka() {
		// An API-only replica never talks to Kafka: the outbox decouples it, and a Kafka
		// outage must not keep it from starting.
		return kc, func() {}, nil
	}
	pctx, cancel := context.WithTimeout(ctx, kafkaStartupTimeout)
	defer cancel()
	if err := kafka.Ping(pctx, kc); err != nil {
		return kafka.Config{}, nil, err
	}
	log.Info("kafka cluster", "brokers", cfg.KafkaBrokers, "security", kc.Security)
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(tctx, kc, topics...); err != nil {
		return kafka.Config{}, nil, err
	}
	return kc, func() {}, nil
}

// elasticsearchConfig is the search adapter's configuration of cfg.
func elasticsearchConfig(cfg service.Config) elasticsearch.Config {
	return elasticsearch.Config{
		URL: cfg.ElasticsearchURL, Compat: cfg.ElasticsearchCompat, Alias: cfg.SearchAlias, RefreshInterval: cfg.SearchRefreshInterval,
		Shards: cfg.SearchShards, Replicas: cfg.SearchReplicas,
		Credentials: elasticsearch.Credentials{
			APIKey:   cfg.ElasticsearchAPIKey.Reveal(),
			Username: cfg.ElasticsearchUsername,
			Password: cfg.ElasticsearchPassword.Reveal(),
		},
		CAFile:        cfg.ElasticsearchCAFile,
		CAFingerprint: cfg.ElasticsearchCAFingerprint,
	}
}

// searchStartupError says which setting to check when the search cluster refuses the service
// at start-up. The URL is shown without its password.
func searchStartupError(cfg service.Config, err error) error {
	at := service.RedactURLs(cfg.ElasticsearchURL)
	var (
		verify *tls.CertificateVerificationError
		header tls.RecordHeaderError
	)
	switch {
	case errors.Is(err, elasticsearch.ErrCredentialsRefused):
		return fmt.Errorf("search read model at %s: the cluster refused the credentials: check ELASTICSEARCH_API_KEY, or ELASTICSEARCH_USERNAME and ELASTICSEARCH_PASSWORD: %w", at, err)
	case errors.As(err, &verify):
		return fmt.Errorf("search read model at %s: the cluster's TLS certificate is not trusted: check ELASTICSEARCH_CA_FILE or ELASTICSEARCH_CA_FINGERPRINT: %w", at, err)
	case errors.As(err, &header):
		return fmt.Errorf("search read model at %s: the cluster does not speak TLS there: check the URL's scheme: %w", at, err)
	}
	return fmt.Errorf("search read model at %s: %w", at, err)
}

// adminSecurity is how the gRPC admin port admits callers: the token check and the TLS
// server options.
func adminSecurity(cfg service.Config, log *slog.Logger) (grpcport.Authenticator, []grpc.ServerOption, error) {
	if err := cfg.CheckAdminExposure(); err != nil {
		return nil, nil, err
	}
	var auth grpcport.Authenticator
	if cfg.AdminToken.IsSet() {
		v, err := adminauth.NewVerifier(cfg.AdminToken.Reveal())
		if err != nil {
			return nil, nil, err
		}
		auth = v
	}
	var opts []grpc.ServerOption
	if cfg.GRPCTLSCertFile != "" {
		cert, err := tlsfiles.KeyPair(cfg.GRPCTLSCertFile, cfg.GRPCTLSKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("grpc admin port TLS: %w", err)
		}
		tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		if cfg.GRPCTLSClientCAFile != "" {
			pool, err := tlsfiles.CAPool(cfg.GRPCTLSClientCAFile)
			if err != nil {
				return nil, nil, fmt.Errorf("grpc admin port client CA: %w", err)
			}
			tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	} else if auth != nil && !service.IsLoopback(cfg.GRPCAddr) {
		log.Warn("the admin token travels in clear text to a non-loopback GRPC_ADDR: set GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE unless the network encrypts it",
			"grpc_addr", cfg.GRPCAddr)
	}
	log.Info("grpc admin port security", "addr", cfg.GRPCAddr, "token", auth != nil, "tls", cfg.GRPCTLSCertFile != "", "mutual_tls", cfg.AdminMTLS())
	return auth, opts, nil
}

// provideMetricsServer is the /metrics listener of METRICS_ADDR, nil when metrics stay on
// HTTP_ADDR.
func provideMetricsServer(cfg service.Config, reg *metrics.Registry, log *slog.Logger) (*httpport.MetricsServer, error) {
	if cfg.MetricsAddr == "" {
		return nil, nil
	}
	return httpport.NewMetricsServer(cfg.MetricsAddr, reg.Handler(), cfg.ShutdownTimeout, log.With("component", "metrics"))
}

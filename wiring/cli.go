package wiring

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/wire"

	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/application/decorator"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/service"
)

// The CLI's tools talk to Kafka and PostgreSQL directly, not to a service process: the DLQ is
// an ordinary topic any client can read, and its audit log is a table. With KAFKA_BROKERS
// empty they use EMBEDDED_KAFKA_ADDR, where a running `catalog serve` exposes its embedded
// broker.

const (
	// cliConnectTimeout bounds the first contact with Kafka and with the database, so a
	// command against an unreachable server fails fast with a hint instead of at its timeout.
	cliConnectTimeout = 10 * time.Second
	// cliDatabaseMaxConns is the pool of a CLI command: it runs one query at a time.
	cliDatabaseMaxConns = 2
)

// DLQTool says which `catalog dlq` command is wired and what it needs beside the reader of
// DLQ_TOPIC.
type DLQTool struct {
	// Op names the command in its errors ("dlq replay").
	Op string
	// Audit opens the audit log in DATABASE_URL (and checks that it is migrated).
	Audit bool
	// Publisher connects the replay publisher to PRODUCT_EVENTS_TOPIC.
	Publisher bool
}

// CLISet provides the CLI's DLQ use cases: the reader of DLQ_TOPIC, the replay publisher and
// the audit log, each only when the command needs it.
var CLISet = wire.NewSet(provideCLIKafka, provideCLIDLQReader, provideCLIReplayPublisher, provideCLIAuditLog, provideCLIReplayAudit, provideCLIDLQService)

// provideCLIKafka is the Kafka the CLI talks to: KAFKA_BROKERS with its TLS and SASL
// settings, or the embedded broker of a running `catalog serve` on EMBEDDED_KAFKA_ADDR.
func provideCLIKafka(cfg service.Config) (kafka.Config, error) {
	brokers := cfg.KafkaBrokers
	if len(brokers) == 0 {
		brokers = []string{cfg.EmbeddedKafkaAddr}
	}
	kc, err := KafkaClientConfig(cfg, brokers)
	if err != nil {
		return kafka.Config{}, fmt.Errorf("dlq: %w", err)
	}
	return kc, nil
}

// provideCLIDLQReader connects to Kafka and returns the reader of DLQ_TOPIC, failing fast
// with a hint when the brokers cannot be reached or refuse the credentials.
func provideCLIDLQReader(ctx context.Context, cfg service.Config, kc kafka.Config, log *slog.Logger) (*kafka.DLQReader, func(), error) {
	pctx, cancel := context.WithTimeout(ctx, cliConnectTimeout)
	defer cancel()
	if err := kafka.Ping(pctx, kc); err != nil {
		if len(cfg.KafkaBrokers) == 0 {
			return nil, nil, fmt.Errorf("dlq: cannot reach Kafka at %s (KAFKA_BROKERS is empty, so this is EMBEDDED_KAFKA_ADDR: is 'catalog serve' running?): %w",
				strings.Join(kc.Brokers, ","), err)
		}
		return nil, nil, fmt.Errorf("dlq: Kafka at %s (KAFKA_BROKERS): %w", strings.Join(kc.Brokers, ","), err)
	}
	r, err := kafka.NewDLQReader(kc, cfg.DLQTopic, log)
	if err != nil {
		return nil, nil, fmt.Errorf("dlq: %w", err)
	}
	return r, r.Close, nil
}

// provideCLIReplayPublisher is the publisher to PRODUCT_EVENTS_TOPIC, nil unless the tool
// replays.
func provideCLIReplayPublisher(tool DLQTool, cfg service.Config, kc kafka.Config) (ops.ReplayPublisher, func(), error) {
	if !tool.Publisher {
		return nil, func() {}, nil
	}
	p, err := kafka.NewReplayPublisher(kc, cfg.ProductEventsTopic)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", tool.Op, err)
	}
	return p, p.Close, nil
}

// provideCLIAuditLog opens DATABASE_URL and checks that the audit table exists with its
// resolution columns; nil unless the tool needs the audit log.
func provideCLIAuditLog(ctx context.Context, tool DLQTool, cfg service.Config) (*postgres.DLQAudit, func(), error) {
	if !tool.Audit {
		return nil, func() {}, nil
	}
	db, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, MaxConns: cliDatabaseMaxConns, ConnectTimeout: cliConnectTimeout})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: audit log: %w", tool.Op, err)
	}
	audit, err := postgres.NewDLQAudit(db)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	if err := audit.CheckSchema(ctx); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("%s: audit log: %w", tool.Op, err)
	}
	return audit, db.Close, nil
}

// provideCLIReplayAudit is the audit log as the use cases see it: a nil interface, not a nil
// pointer in one, when the tool does without.
func provideCLIReplayAudit(audit *postgres.DLQAudit) ops.ReplayAudit {
	if audit == nil {
		return nil
	}
	return audit
}

// provideCLIDLQService is the DLQ use cases over what the tool needs. A CLI run is one use
// case whose outcome the command prints, so the decorators neither log nor count it.
func provideCLIDLQService(reader *kafka.DLQReader, pub ops.ReplayPublisher, audit ops.ReplayAudit) (*ops.DLQService, error) {
	return ops.NewDLQService(reader, pub, audit, decorator.Deps{})
}

// Migrate applies the database migrations to DATABASE_URL, for `catalog migrate`, and
// returns how many it applied now.
func Migrate(ctx context.Context, cfg service.Config, log *slog.Logger) (int, error) {
	db, cleanup, err := InitializeDatabase(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	return postgres.Migrate(ctx, db, log)
}

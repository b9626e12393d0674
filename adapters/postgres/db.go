// Package postgres is the system of record: products, idempotency keys and the transactional
// outbox in PostgreSQL, reached through pgx/v5 (pooled, and as database/sql through pgx's
// stdlib driver where watermill-sql needs a *sql.Tx).
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// Config configures the connection pool.
type Config struct {
	// URL is a PostgreSQL connection URL (DATABASE_URL).
	URL string
	// MaxConns caps the pool; every relay lane holds one connection while it polls.
	MaxConns int32
	// ConnectTimeout bounds the first connection attempt so a wrong URL fails fast.
	ConnectTimeout time.Duration
	// Tracer, when set, observes every statement and batch sent (pgx.QueryTracer, and
	// pgx.BatchTracer when it implements it): tests count round trips with it.
	Tracer pgx.QueryTracer
}

func (c *Config) setDefaults() {
	if c.MaxConns == 0 {
		c.MaxConns = 32
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 10 * time.Second
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("postgres: DATABASE_URL is empty")
	}
	if c.MaxConns < 2 {
		return errors.New("postgres: MaxConns must be at least 2")
	}
	return nil
}

// DB bundles the pgx pool and a database/sql view of the same pool.
type DB struct {
	// Pool serves plain reads and the pgx-native paths.
	Pool *pgxpool.Pool
	// SQL is the same pool behind database/sql, for the migrations.
	SQL *sql.DB
	// Writes is the same pool behind database/sql with pipelined transactions (pipeline.go),
	// for the product repository: a write and its outbox row on one *sql.Tx in one round trip.
	Writes *sql.DB

	notify *outboxNotifier // the outbox commit notifications, shared by every relay lane
}

// Open connects and pings, so a bad DATABASE_URL fails at start-up with its reason.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse DATABASE_URL: %w", err)
	}
	pcfg.MaxConns = cfg.MaxConns
	if cfg.Tracer != nil {
		pcfg.ConnConfig.Tracer = cfg.Tracer
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: ping %s: %w", pcfg.ConnConfig.Host, err)
	}
	db := &DB{Pool: pool, SQL: stdlib.OpenDBFromPool(pool), Writes: openPipelinedDB(pool)}
	db.notify = newOutboxNotifier(db)
	return db, nil
}

// Ping checks the database, for readiness probes.
func (db *DB) Ping(ctx context.Context) error { return db.Pool.Ping(ctx) }

// Close closes both views of the pool.
func (db *DB) Close() {
	db.notify.close()
	_ = db.SQL.Close()
	_ = db.Writes.Close()
	db.Pool.Close()
}

package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/marketplace/catalog/application/decorator"
)

// ErrInvalid marks a request the use cases refuse (a negative threshold, say).
var ErrInvalid = errors.New("invalid operations request")

// Config configures the operations use cases.
type Config struct {
	// Alias is the read model's alias (SEARCH_ALIAS), for display.
	Alias string
	// EventsTopic is the product events topic the projector consumes.
	EventsTopic string
	// DLQTopic is the dead-letter topic.
	DLQTopic string
	// ProjectorGroup is the projector's consumer group.
	ProjectorGroup string
	// SourceTimeout bounds the reading of each source of a Status.
	SourceTimeout time.Duration
	// VerifyPageSize is the page size of Verify's merge of products with documents.
	VerifyPageSize int
	// VerifyMaxPending bounds the differences Verify holds for their re-check; when it is
	// reached, the scan waits for them to settle and re-checks them before it goes on, so
	// memory stays bounded however many documents differ.
	VerifyMaxPending int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Defaults of Config.
const (
	DefaultSourceTimeout    = 10 * time.Second
	DefaultVerifyPageSize   = 10_000
	DefaultVerifyMaxPending = 50_000
)

func (c *Config) setDefaults() {
	if c.SourceTimeout == 0 {
		c.SourceTimeout = DefaultSourceTimeout
	}
	if c.VerifyPageSize == 0 {
		c.VerifyPageSize = DefaultVerifyPageSize
	}
	if c.VerifyMaxPending == 0 {
		c.VerifyMaxPending = DefaultVerifyMaxPending
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	for name, v := range map[string]string{"alias": c.Alias, "events topic": c.EventsTopic, "DLQ topic": c.DLQTopic, "projector group": c.ProjectorGroup} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is empty", name))
		}
	}
	if c.SourceTimeout <= 0 || c.VerifyPageSize < 1 || c.VerifyMaxPending < 1 {
		errs = append(errs, errors.New("source timeout, verify page size and verify max pending must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ops: %w", err)
	}
	return nil
}

// Deps are the ports of the operations use cases; all are required unless marked optional.
type Deps struct {
	// Database reads the outbox, transactions and product counts.
	Database Database
	// Products pages through the products for Verify.
	Products Products
	// Events reads consumer-group lag and topic depths.
	Events EventStats
	// ReadModel reads the alias, its indices and their documents.
	ReadModel ReadModel
	// Rebuilds lists rebuild records.
	Rebuilds RebuildHistory
	// DeadLetters tells which dead letters were replayed or resolved.
	DeadLetters DLQLedger
	// Replication reads the replication of the topics; nil leaves it out of the status.
	Replication Replication
	// Search reads the search cluster's health; nil (the embedded engine) leaves it out.
	Search SearchCluster
	// Progress remembers when each partition's committed offset last moved; the metrics
	// sampler should feed the same one, so a stall is known before anyone asks. Nil gives
	// the status one of its own, fed only by GetStatus.
	Progress *CommitProgress
	// Log receives Verify's summary lines and a debug line per use-case execution; nil
	// discards them.
	Log *slog.Logger
	// Metrics records every use-case execution; nil disables metrics.
	Metrics decorator.MetricsClient
}

// Service groups the operator's two checks for the ports that offer both (the gRPC admin
// port, the console, the metrics sampler): each method runs its decorated use case.
type Service struct {
	status GetStatusHandler
	verify VerifyReadModelHandler
}

// NewService returns the operations use cases over their ports; each constructor checks
// the configuration and the ports it needs.
func NewService(cfg Config, deps Deps) (*Service, error) {
	status, err := NewGetStatusHandler(cfg, deps)
	if err != nil {
		return nil, err
	}
	verify, err := NewVerifyReadModelHandler(cfg, deps)
	if err != nil {
		return nil, err
	}
	return &Service{status: status, verify: verify}, nil
}

// Status runs GetStatus: the pipeline read and judged against th.
func (s *Service) Status(ctx context.Context, th Thresholds) (Status, error) {
	return s.status.Handle(ctx, GetStatus{Thresholds: th})
}

// Verify runs VerifyReadModel: the database compared with the read model, progress (if not
// nil) told about twice a second.
func (s *Service) Verify(ctx context.Context, req VerifyRequest, progress func(VerifyProgress)) (VerifyReport, error) {
	return s.verify.Handle(ctx, VerifyReadModel{Request: req, Progress: progress})
}

// logger is Log, or a logger that discards when it is nil.
func (d Deps) logger() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}

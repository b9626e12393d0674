// Package decorator wraps command and query handlers with logging and metrics, so handlers
// hold business logic only and every use case is observed the same way.
package decorator

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Handler is any use case: a command or a query with its result.
type Handler[C any, R any] interface {
	Handle(ctx context.Context, cmd C) (R, error)
}

// MetricsClient records one use-case execution. The adapter behind it (Prometheus) lives
// outside the application layer.
type MetricsClient interface {
	ObserveUseCase(name string, duration time.Duration, err error)
}

// Apply wraps h with logging and metrics. name is the use case's name in logs and metrics.
// A nil log discards the lines and nil metrics records nothing, so a one-shot tool can run
// a use case without an observability stack.
func Apply[C any, R any](h Handler[C, R], log *slog.Logger, metrics MetricsClient) Handler[C, R] {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name := useCaseName(h)
	return logging[C, R]{base: metricsDecorator[C, R]{base: h, name: name, client: metrics}, name: name, log: log}
}

type logging[C any, R any] struct {
	base Handler[C, R]
	name string
	log  *slog.Logger
}

func (d logging[C, R]) Handle(ctx context.Context, cmd C) (R, error) {
	start := time.Now()
	r, err := d.base.Handle(ctx, cmd)
	if err != nil {
		d.log.DebugContext(ctx, "use case failed", "use_case", d.name, "duration", time.Since(start), "err", err)
	} else {
		d.log.DebugContext(ctx, "use case done", "use_case", d.name, "duration", time.Since(start))
	}
	return r, err
}

type metricsDecorator[C any, R any] struct {
	base   Handler[C, R]
	name   string
	client MetricsClient
}

func (d metricsDecorator[C, R]) Handle(ctx context.Context, cmd C) (R, error) {
	start := time.Now()
	r, err := d.base.Handle(ctx, cmd)
	if d.client != nil {
		d.client.ObserveUseCase(d.name, time.Since(start), err)
	}
	return r, err
}

// useCaseName derives "create_product" from the handler type createProductHandler.
func useCaseName(h any) string {
	n := fmt.Sprintf("%T", h)
	if i := strings.LastIndex(n, "."); i >= 0 {
		n = n[i+1:]
	}
	n = strings.TrimSuffix(strings.TrimPrefix(n, "*"), "Handler")
	// Split before an upper-case letter that starts a word: after a lower-case letter, or
	// before a lower-case letter at the end of an initialism ("ProductByID" -> product_by_id).
	rs := []rune(n)
	var b strings.Builder
	isUpper := func(r rune) bool { return r >= 'A' && r <= 'Z' }
	for i, r := range rs {
		if isUpper(r) && i > 0 && (!isUpper(rs[i-1]) || i+1 < len(rs) && !isUpper(rs[i+1])) {
			b.WriteByte('_')
		}
		if isUpper(r) {
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Deps are what every decorated handler needs.
type Deps struct {
	// Log receives one debug line per use-case execution; nil discards them.
	Log *slog.Logger
	// Metrics records counts and durations; nil disables metrics.
	Metrics MetricsClient
}

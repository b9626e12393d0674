package postgres

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/marketplace/catalog/migrations"
)

// Migrate applies the embedded migrations. A session-level advisory lock makes it safe to run
// from several processes at once (every replica may migrate on start); applied migrations are
// skipped, so running it twice is a no-op, and one missing below the database's version is applied.
func Migrate(ctx context.Context, db *DB, log *slog.Logger) (applied int, err error) {
	// Poll the lock every second for up to five minutes: a peer migrating a big table must not
	// make the others give up, and a short migration must not keep them waiting long.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return 0, fmt.Errorf("migrate: locker: %w", err)
	}
	// Migrations are numbered when a change is planned and released in the order changes are
	// merged, so a database may already be past a number the new release brings: apply such a
	// missing migration rather than refuse to start. Each migration therefore must not depend on
	// one numbered above it.
	p, err := goose.NewProvider(goose.DialectPostgres, db.SQL, migrations.FS,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true), goose.WithAllowOutofOrder(true))
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	for _, r := range results {
		log.Info("migration applied", "source", r.Source.Path, "duration", r.Duration)
	}
	return len(results), nil
}

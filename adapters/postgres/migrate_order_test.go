package postgres_test

import (
	"context"
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/pressly/goose/v3"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/migrations"
)

// Migrations are numbered when a change is planned and land in whatever order the changes are
// merged, so a database can already carry a higher number than a migration the next release
// brings: the rebuild-resume migration (00008) reaches databases that a release with the tags
// migration (00009) already brought up to date. Migrate applies the missing one instead of
// refusing to start, and then has nothing left to do.
func TestMigrateAppliesAMigrationNumberedBelowTheDatabasesVersion(t *testing.T) {
	const late = "00008_rebuild_resume.sql"
	url := testenv.NewDatabase(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// The earlier release: every migration but the late one.
	earlier := fstest.MapFS{}
	err = fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == late {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		earlier[path] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := earlier["00009_product_tags.sql"]; !ok {
		t.Fatalf("the scenario needs a migration numbered above %s; found %v", late, earlier)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db.SQL, earlier, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("the earlier release's migrations: %v", err)
	}

	n, err := postgres.Migrate(ctx, db, quietLog())
	if err != nil || n != 1 {
		t.Fatalf("migrate over a database past %s applied %d, %v; want the late one applied", late, n, err)
	}
	if count(t, db, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'rebuilds' AND column_name = 'fill_after'`) != 1 ||
		count(t, db, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'products' AND column_name = 'tags'`) != 1 {
		t.Fatal("after migrate, the schema lacks the late migration's or the later one's columns")
	}
	if n, err := postgres.Migrate(ctx, db, quietLog()); err != nil || n != 0 {
		t.Fatalf("a second migrate applied %d, %v; want nothing", n, err)
	}
}

package postgres_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/internal/securetest"
)

// TestDatabaseURLWithVerifyFull: DATABASE_URL's libpq TLS parameters reach the server through
// pgx. With sslmode=verify-full and the server's CA the service connects, migrates and works
// over TLS (the server refuses plaintext, and pg_stat_ssl says so); a CA that did not sign the
// server's certificate, or a host name the certificate does not carry, is refused.
func TestDatabaseURLWithVerifyFull(t *testing.T) {
	pg := securetest.StartTLSPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// verify-full checks the CA and the name (the certificate names localhost only);
	// verify-ca checks the CA alone.
	for _, params := range []struct{ host, mode string }{{"localhost", "verify-full"}, {"127.0.0.1", "verify-ca"}} {
		db, err := postgres.Open(ctx, postgres.Config{URL: pg.URL(params.host, map[string]string{"sslmode": params.mode, "sslrootcert": pg.CA.CertFile}), MaxConns: 2})
		if err != nil {
			t.Fatalf("%s to %s: %v", params.mode, params.host, err)
		}
		if _, err := postgres.Migrate(ctx, db, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
			t.Fatalf("migrate over TLS: %v", err)
		}
		var ssl bool
		if err := db.Pool.QueryRow(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil || !ssl {
			t.Fatalf("connection over TLS: %v, %v", ssl, err)
		}
		db.Close()
	}
	other := securetest.NewCA(t, t.TempDir(), "other")
	for name, tc := range map[string]struct {
		url  string
		want string
	}{
		"plaintext":  {pg.URL("localhost", map[string]string{"sslmode": "disable"}), "no encryption"},
		"another CA": {pg.URL("localhost", map[string]string{"sslmode": "verify-full", "sslrootcert": other.CertFile}), "certificate signed by unknown authority"},
		"wrong name": {pg.URL("127.0.0.1", map[string]string{"sslmode": "verify-full", "sslrootcert": pg.CA.CertFile}), "doesn't contain any IP SANs"},
	} {
		t.Run(name, func(t *testing.T) {
			db, err := postgres.Open(ctx, postgres.Config{URL: tc.url, MaxConns: 2})
			if err == nil {
				err = db.Ping(ctx)
				db.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s: %v, want an error about %q", tc.url, err, tc.want)
			}
		})
	}
}

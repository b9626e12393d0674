package postgres_test

import (
	"context"
	"testing"

	"github.com/marketplace/catalog/adapters/postgres"
)

// TestRebuildLockSessionKeepalives: the lock's session has TCP keepalives on both ends, so a
// holder that vanished (a dead host, a cut network) is noticed within about 25 s: by the
// client through its socket, by PostgreSQL through the session's tcp_keepalives_* settings,
// which frees the lock. And no idle_session_timeout ends the idle session.
func TestRebuildLockSessionKeepalives(t *testing.T) {
	db, _ := migratedDB(t)
	ctx := context.Background()
	lock, err := newRebuildStore(t, db).TryLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	for name, want := range map[string]string{"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5",
		"tcp_keepalives_count": "3", "idle_session_timeout": "0", "application_name": "catalog rebuild lock"} {
		got, err := postgres.LockSessionSetting(ctx, lock, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got != want {
			t.Errorf("the lock session's %s = %q, want %q", name, got, want)
		}
	}
	on, idle, interval, count, err := postgres.LockSocketKeepAlive(lock)
	if err != nil {
		t.Fatal(err)
	}
	if !on || idle != 10 || interval != 5 || count != 3 {
		t.Errorf("the lock socket's keepalive: on=%v idle=%ds interval=%ds count=%d, want on, 10 s, 5 s, 3", on, idle, interval, count)
	}
}

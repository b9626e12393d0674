package securetest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marketplace/catalog/internal/testenv"
)

// Postgres is a throwaway PostgreSQL cluster (initdb into a temporary directory, Debian's
// binaries as `make deps` installs them) that accepts connections only over TLS
// (pg_hba: hostssl), with a server certificate of its own test CA for the name localhost
// only (so verify-full to 127.0.0.1 fails where verify-ca passes). It runs as the postgres user when the test runs as root (initdb refuses root).
type Postgres struct {
	// Port is where it listens on 127.0.0.1.
	Port int
	// CA signs the server certificate.
	CA *CA

	bin, data string
	cred      *syscall.Credential
}

// StartTLSPostgres starts the cluster for the test and stops it when the test ends. A machine
// without PostgreSQL's server binaries skips the test, or fails it in CI.
func StartTLSPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	bin, err := pgBinDir()
	if err != nil {
		testenv.Unavailable(tb, "PostgreSQL server binaries (initdb, pg_ctl)", err)
		return nil
	}
	dir, err := os.MkdirTemp("", "catalog-pgtls-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	p := &Postgres{Port: testenv.FreePort(tb), bin: bin, data: filepath.Join(dir, "data")}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			testenv.Unavailable(tb, "the postgres user (initdb does not run as root)", err)
			return nil
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	p.CA = NewCA(tb, dir, "pg-test")
	srv := p.CA.Issue(tb, "pg-server", "localhost")
	p.chown(tb, dir, srv.CertFile, srv.KeyFile, p.CA.CertFile)
	if out, err := p.run("initdb", "-D", p.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
ssl = on
ssl_cert_file = '%s'
ssl_key_file = '%s'
max_connections = 30
fsync = off
`, p.Port, dir, srv.CertFile, srv.KeyFile)
	appendFile(tb, filepath.Join(p.data, "postgresql.conf"), conf)
	// TLS or nothing: a plaintext connection is refused, so a passing test proves TLS.
	if err := os.WriteFile(filepath.Join(p.data, "pg_hba.conf"), []byte("local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	p.chown(tb, filepath.Join(p.data, "pg_hba.conf"))
	if out, err := p.run("pg_ctl", "-D", p.data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "120", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		tb.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, lastLines(log, 15))
	}
	tb.Cleanup(func() { _, _ = p.run("pg_ctl", "-D", p.data, "-m", "immediate", "-w", "stop") })
	return p
}

// URL is the URL of database postgres on the cluster with the given libpq TLS parameters
// (sslmode, sslrootcert, ...).
func (p *Postgres) URL(host string, params map[string]string) string {
	q := url.Values{}
	for k, v := range params {
		q.Set(k, v)
	}
	u := url.URL{Scheme: "postgres", User: url.User("postgres"), Host: fmt.Sprintf("%s:%d", host, p.Port), Path: "/postgres", RawQuery: q.Encode()}
	return u.String()
}

func (p *Postgres) run(tool string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, tool), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Dir = os.TempDir()
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	return cmd.CombinedOutput()
}

func (p *Postgres) chown(tb testing.TB, paths ...string) {
	tb.Helper()
	if p.cred == nil {
		return
	}
	for _, f := range paths {
		if err := os.Chown(f, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			tb.Fatal(err)
		}
	}
}

// pgBinDir finds initdb: on PATH, or Debian's /usr/lib/postgresql/<version>/bin (newest).
func pgBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(dirs) == 0 {
		return "", errors.New("no initdb on PATH or under /usr/lib/postgresql/*/bin")
	}
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) < pgVersion(dirs[j]) })
	return filepath.Dir(dirs[len(dirs)-1]), nil
}

func pgVersion(initdb string) int {
	v, _ := strconv.Atoi(strings.Split(filepath.Base(filepath.Dir(filepath.Dir(initdb))), ".")[0])
	return v
}

func appendFile(tb testing.TB, path, s string) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		tb.Fatal(err)
	}
}

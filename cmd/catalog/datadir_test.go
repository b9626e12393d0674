package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marketplace/catalog/internal/testenv"
)

// nobody is the uid (and gid) the embedded-mode test runs catalog as: like the image's
// nonroot user, it owns nothing on the machine.
const nobody = 65534

// asUser runs this test binary as the catalog command (TestMain) under uid/gid nobody.
func asUser(ctx context.Context, t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "CATALOG_TEST_AS_MAIN=1"), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	cmd.Dir = "/"
	return cmd
}

// TestEmbeddedModeAsNonRootUser is the image's situation: catalog runs as a user that owns
// nothing, CATALOG_DATA_DIR's parent belongs to root. Without a prepared directory serve
// stops with the variable and what to do; with the directory the image prepares (owned by
// the user) the embedded broker and search engine start and `catalog healthcheck`, run as
// the same user, reports ready.
func TestEmbeddedModeAsNonRootUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching to another uid needs root (CI runs as root)")
	}
	// The test binary must be reachable by nobody, as /usr/local/bin/catalog is in the image.
	for dir := filepath.Dir(os.Args[0]); dir != "/"; dir = filepath.Dir(dir) {
		if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o005 != 0o005 {
			if err := os.Chmod(dir, fi.Mode().Perm()|0o005); err != nil {
				t.Fatal(err)
			}
		}
	}
	parent := t.TempDir() // root-owned, like /var/lib
	for _, dir := range []string{filepath.Dir(parent), parent} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dataDir := filepath.Join(parent, "catalog")
	httpAddr := testenv.Addr(t)
	env := []string{"DATABASE_URL=" + testenv.NewDatabase(t), "KAFKA_BROKERS=", "ELASTICSEARCH_URL=",
		"EMBEDDED_KAFKA_ADDR=" + testenv.Addr(t), "HTTP_ADDR=" + httpAddr, "GRPC_ADDR=" + testenv.Addr(t),
		"METRICS_ADDR=", "CATALOG_DATA_DIR=" + dataDir, "LOG_LEVEL=warn"}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := asUser(ctx, t, env, "migrate").CombinedOutput(); err != nil {
		t.Fatalf("migrate as uid %d: %v\n%s", nobody, err, out)
	}
	var stderr bytes.Buffer
	cmd := asUser(ctx, t, env, "serve")
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil || !strings.Contains(stderr.String(), "CATALOG_DATA_DIR="+dataDir+" is not writable by this process (uid 65534)") {
		t.Fatalf("serve as uid %d without a data directory: %v, stderr:\n%s\nwant a failure naming CATALOG_DATA_DIR", nobody, err, stderr.String())
	}

	// What the Dockerfile does: the directory exists and belongs to the user.
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dataDir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	// A file, not a buffer: the process writes it while the test reads it.
	serveLog, err := os.Create(filepath.Join(t.TempDir(), "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer serveLog.Close()
	logged := func() string { b, _ := os.ReadFile(serveLog.Name()); return string(b) }
	serve := asUser(ctx, t, env, "serve")
	serve.Stderr = serveLog
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- serve.Wait() }()
	defer func() {
		_ = serve.Process.Signal(syscall.SIGTERM)
		<-exited
	}()
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("catalog serve as uid %d exited: %v\n%s", nobody, err, logged())
		default:
		}
		var out bytes.Buffer
		check := asUser(ctx, t, env, "healthcheck")
		check.Stdout, check.Stderr = &out, &out
		if check.Run() == nil {
			if !strings.Contains(out.String(), `"status":"ok"`) {
				t.Fatalf("healthcheck passed with %q", out.String())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("catalog serve as uid %d never became ready; last healthcheck: %s\nserve's stderr:\n%s", nobody, out.String(), logged())
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, sub := range []string{"kafka", "search"} {
		fi, err := os.Stat(filepath.Join(dataDir, sub))
		if err != nil {
			t.Fatalf("the embedded %s keeps no state under CATALOG_DATA_DIR: %v", sub, err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != nobody {
			t.Fatalf("%s/%s is not owned by uid %d", dataDir, sub, nobody)
		}
	}
}

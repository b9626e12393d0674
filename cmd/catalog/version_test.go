package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/marketplace/catalog/service"
)

// --version and `version` answer whatever the environment says: an operator asks which build
// runs precisely when a configuration is in doubt.
func TestVersionIgnoresTheConfiguration(t *testing.T) {
	t.Setenv("OUTBOX_LANES", "banana")
	b := service.Build()
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, errOut, code := runCLI(t, args...)
		if code != exitOK || strings.TrimSpace(out) != b.String() {
			t.Fatalf("catalog %v: exit %d, stdout %q, stderr %q; want exit 0 and %q", args, code, out, errOut, b.String())
		}
	}
	out, _, code := runCLI(t, "version", "--json")
	var got service.BuildInfo
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != exitOK || got != b {
		t.Fatalf("catalog version --json: exit %d, %q (%v); want %+v", code, out, err, b)
	}
}

// Bare `catalog` is a usage mistake: exit 2 with the usage on stderr, not the help on stdout
// and exit 0.
func TestBareCatalogIsAUsageError(t *testing.T) {
	var errb bytes.Buffer
	code := run(context.Background(), nil, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), "Available Commands:") || !strings.Contains(errb.String(), "catalog: a command is required") {
		t.Fatalf("bare catalog: exit %d, stderr %q; want 2 with the usage and the reason", code, errb.String())
	}
}

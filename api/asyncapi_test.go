package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/marketplace/catalog/api"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/domain/product"
)

// checkDir holds the pinned npm project of the AsyncAPI check (package.json, its lock and the
// script); the test installs it into cacheDir, which git ignores.
const (
	checkDir = "asyncapi-check"
	cacheDir = "../.cache/asyncapi"
)

// TestAsyncAPIDocumentIsValid validates api/asyncapi.yaml with the AsyncAPI project's own
// parser (@asyncapi/parser, the library of the AsyncAPI CLI), installed here from the npm
// registry with `npm ci` at the version the committed lock file pins. Errors and warnings
// fail the test. Without npm the test fails: CI must not pass a document nobody validated.
func TestAsyncAPIDocumentIsValid(t *testing.T) {
	if testing.Short() {
		t.Skip("installs @asyncapi/parser from the npm registry; not in -short mode")
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required to validate api/asyncapi.yaml with @asyncapi/parser (install Node.js 18 or later with npm): %v", tool, err)
		}
	}
	cache, err := filepath.Abs(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	install(t, cache)
	doc, err := filepath.Abs("asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "validate.js", doc)
	cmd.Dir = cache
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("@asyncapi/parser refuses api/asyncapi.yaml: %v\n%s", err, stderr.String())
	}
	var summary struct {
		AsyncAPI string   `json:"asyncapi"`
		Channels []string `json:"channels"`
		Messages []string `json:"messages"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &summary); err != nil {
		t.Fatalf("validator output %q: %v", stdout.String(), err)
	}
	if summary.AsyncAPI[:2] != "3." || !reflect.DeepEqual(summary.Channels, []string{"product.events", "dlq.product.events"}) {
		t.Errorf("parsed document: %+v", summary)
	}
	t.Logf("%s (%s)", stdout.String(), stderr.String())
}

// install copies the pinned npm project into cache and runs `npm ci` there unless the same
// lock file is installed already.
func install(t *testing.T, cache string) {
	t.Helper()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.ReadFile(filepath.Join(checkDir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	installed, _ := os.ReadFile(filepath.Join(cache, "node_modules", ".catalog-lock"))
	for _, f := range []string{"package.json", "package-lock.json", "validate.js"} {
		b, err := os.ReadFile(filepath.Join(checkDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cache, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if bytes.Equal(installed, lock) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = cache
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", cache, err, out)
	}
	if err := os.WriteFile(filepath.Join(cache, "node_modules", ".catalog-lock"), lock, 0o644); err != nil {
		t.Fatal(err)
	}
}

// asyncAPISchemas reads components.schemas of the AsyncAPI document as JSON values.
func asyncAPISchemas(t *testing.T) map[string]any {
	t.Helper()
	var doc struct {
		Components struct {
			Schemas  map[string]any `yaml:"schemas"`
			Messages map[string]struct {
				Payload map[string]string `yaml:"payload"`
			} `yaml:"messages"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(api.AsyncAPIDocument(), &doc); err != nil {
		t.Fatalf("asyncapi.yaml: %v", err)
	}
	out := map[string]any{}
	for name, s := range doc.Components.Schemas {
		out[name] = asJSON(t, s)
	}
	return out
}

func asJSON(t *testing.T, v any) any {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// The AsyncAPI document describes every data version of the events with exactly the JSON
// Schema of api/events, so the two contracts cannot drift apart; and every data version has
// its schema file with the $id that CloudEvents headers name.
func TestAsyncAPIPayloadsAreTheEventSchemas(t *testing.T) {
	schemas := asyncAPISchemas(t)
	newest := 0
	for _, typ := range product.EventTypes() {
		newest = max(newest, envelope.DataVersion(typ))
	}
	for v := 1; v <= newest; v++ {
		raw, err := fs.ReadFile(api.EventSchemas(), api.EventSchemaFile(v))
		if err != nil {
			t.Fatalf("no JSON Schema of data version %d: %v", v, err)
		}
		var file map[string]any
		if err := json.Unmarshal(raw, &file); err != nil {
			t.Fatal(err)
		}
		if id := file["$id"]; id != envelope.DataSchema(v) {
			t.Errorf("%s has $id %v, want %s", api.EventSchemaFile(v), id, envelope.DataSchema(v))
		}
		delete(file, "$schema")
		delete(file, "$id")
		name := fmt.Sprintf("productEventV%d", v)
		got, ok := schemas[name]
		if !ok {
			t.Errorf("asyncapi.yaml has no components.schemas.%s", name)
			continue
		}
		if !reflect.DeepEqual(got, asJSON(t, file)) {
			g, _ := json.MarshalIndent(got, "", " ")
			t.Errorf("components.schemas.%s differs from %s:\n%s", name, api.EventSchemaFile(v), g)
		}
	}
	if _, ok := schemas[fmt.Sprintf("productEventV%d", newest+1)]; ok {
		t.Errorf("asyncapi.yaml describes data version %d, which this build does not write", newest+1)
	}
}

package elasticsearch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	es8 "github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/testenv"
)

// rmEnv is one test's read model on the real cluster: its own alias, cleaned up afterwards.
type rmEnv struct {
	t      *testing.T
	cfg    elasticsearch.Config
	client *es8.Client
	ix     *elasticsearch.Indices
}

// rmSetup connects to the test cluster with a fresh alias. mutate adjusts the configuration
// before anything is created.
func rmSetup(t *testing.T, mutate func(*elasticsearch.Config)) *rmEnv {
	t.Helper()
	url, compat := testenv.ElasticsearchURL(t)
	zero := 0
	cfg := elasticsearch.Config{
		URL:      url,
		Compat:   compat,
		Alias:    strings.ToLower(testenv.Name("rmtest")),
		Replicas: &zero, // one node: stay green
	}
	if mutate != nil {
		mutate(&cfg)
	}
	client, ix := rmIndices(t, cfg)
	env := &rmEnv{t: t, cfg: cfg, client: client, ix: ix}
	t.Cleanup(env.cleanup)
	return env
}

// rmIndices returns a client of cfg's cluster and the index management of cfg.Alias.
func rmIndices(t *testing.T, cfg elasticsearch.Config) (*es8.Client, *elasticsearch.Indices) {
	t.Helper()
	client, err := elasticsearch.NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	ix, err := elasticsearch.NewIndices(client, cfg)
	if err != nil {
		t.Fatalf("NewIndices: %v", err)
	}
	return client, ix
}

// cleanup deletes every index of the test's alias, including the aliased one.
func (e *rmEnv) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := esapi.IndicesGetRequest{Index: []string{e.cfg.Alias + "*"}}.Do(ctx, e.client)
	if err != nil {
		e.t.Logf("cleanup: %v", err)
		return
	}
	var indices map[string]any
	_ = json.NewDecoder(res.Body).Decode(&indices)
	_ = res.Body.Close()
	for name := range indices {
		if !strings.HasPrefix(name, e.cfg.Alias) {
			continue
		}
		if res, err := (esapi.IndicesDeleteRequest{Index: []string{name}}).Do(ctx, e.client); err == nil {
			_ = res.Body.Close()
		}
	}
}

func (e *rmEnv) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// ensure creates the alias and returns its index.
func (e *rmEnv) ensure() string {
	e.t.Helper()
	index, _, err := e.ix.EnsureAlias(e.ctx())
	if err != nil {
		e.t.Fatalf("EnsureAlias: %v", err)
	}
	return index
}

func (e *rmEnv) projection() *elasticsearch.Projection {
	e.t.Helper()
	p, err := elasticsearch.NewProjection(e.client, e.cfg)
	if err != nil {
		e.t.Fatalf("NewProjection: %v", err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

func (e *rmEnv) search() *elasticsearch.Search {
	e.t.Helper()
	s, err := elasticsearch.NewSearch(e.client, e.cfg)
	if err != nil {
		e.t.Fatalf("NewSearch: %v", err)
	}
	return s
}

func (e *rmEnv) refresh() {
	e.t.Helper()
	if err := e.ix.Refresh(e.ctx(), ""); err != nil {
		e.t.Fatalf("Refresh: %v", err)
	}
}

// rawJSON performs a request against the cluster and decodes the answer; it returns the status.
func (e *rmEnv) rawJSON(method, path string, body any, out any) int {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(e.ctx(), method, path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := e.client.Perform(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer func() { _ = res.Body.Close() }()
	raw, _ := io.ReadAll(res.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return res.StatusCode
}

// aliasIndices is what the cluster says the alias points at.
func (e *rmEnv) aliasIndices() []string {
	e.t.Helper()
	var res map[string]any
	status := e.rawJSON(http.MethodGet, "/_alias/"+e.cfg.Alias, nil, &res)
	if status == http.StatusNotFound {
		return nil
	}
	var out []string
	for k := range res {
		out = append(out, k)
	}
	return out
}

// rmStoredDoc is a document as read back by id through the alias.
type rmStoredDoc struct {
	Found   bool           `json:"found"`
	Version int64          `json:"_version"`
	Source  map[string]any `json:"_source"`
}

func (e *rmEnv) getDoc(id product.ID) rmStoredDoc {
	e.t.Helper()
	var d rmStoredDoc
	e.rawJSON(http.MethodGet, fmt.Sprintf("/%s/_doc/%s", e.cfg.Alias, id), nil, &d)
	return d
}

package elasticsearch_test

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/internal/readmodeltest"
)

// liveV1 makes an index as the release before tags created it (mapping version 1) the alias's
// live index.
func (e *rmEnv) liveV1() string {
	e.t.Helper()
	index, err := e.ix.CreateIndex(e.ctx(), elasticsearch.CreateIndexOptions{MappingVersion: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	if v, ok := e.ix.MappingVersionOf(index); !ok || v != 1 {
		e.t.Fatalf("%s: mapping version %d, %v", index, v, ok)
	}
	if err := e.ix.SwitchAlias(e.ctx(), "", index); err != nil {
		e.t.Fatal(err)
	}
	return index
}

// The upgrade window: the live index is v1 (no tags in its strict mapping) and this release
// writes documents with tags. The startup extends the live index in place, so the very first
// document is stored; status and rollback still see a v1 index (name and _meta unchanged).
func TestExtendMappingLetsAnOldLiveIndexTakeNewDocuments(t *testing.T) {
	e := rmSetup(t, nil)
	ctx := e.ctx()
	index := e.liveV1()

	added, err := e.ix.ExtendMapping(ctx, index)
	if err != nil || !slices.Equal(added, []string{"tags"}) {
		t.Fatalf("ExtendMapping = %v, %v; want [tags]", added, err)
	}
	if again, err := e.ix.ExtendMapping(ctx, index); err != nil || len(again) != 0 {
		t.Fatalf("a second ExtendMapping (another replica starting) = %v, %v; want nothing to add", again, err)
	}
	p := e.projection()
	snap := readmodeltest.Product{ID: readmodeltest.NewID(), Name: "Upgrade kettle", Tags: []string{"sale"}}.Snapshot(t)
	if err := p.Apply(ctx, snap); err != nil {
		t.Fatalf("Apply on the extended v1 index: %v", err)
	}
	e.refresh()
	res, err := e.search().Search(ctx, query.SearchProducts{Tags: []string{"sale"}})
	if err != nil || res.Total != 1 || !slices.Equal(res.Items[0].Tags, []string{"sale"}) {
		t.Fatalf("tags filter on the extended index: %+v, %v", res, err)
	}

	var mapping map[string]struct {
		Mappings struct {
			Dynamic string         `json:"dynamic"`
			Meta    map[string]any `json:"_meta"`
		} `json:"mappings"`
	}
	e.rawJSON(http.MethodGet, "/"+index+"/_mapping", nil, &mapping)
	m := mapping[index].Mappings
	if m.Dynamic != "strict" || m.Meta["mapping_version"] != float64(1) {
		t.Fatalf("the extended index says dynamic %q, _meta %v; want strict and still version 1", m.Dynamic, m.Meta)
	}
	current, err := e.ix.CreateIndex(ctx, elasticsearch.CreateIndexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if added, err := e.ix.ExtendMapping(ctx, current); err != nil || len(added) != 0 {
		t.Fatalf("ExtendMapping of a current index = %v, %v; want nothing to add", added, err)
	}
}

// Without the startup extension (another release's rebuild or rollback moved the alias to an
// old index, say), a document the strict mapping refuses for a missing field is not
// dead-lettered: Apply reports a transient ErrMappingBehind, extends the index itself, and the
// retry the projector makes stores the document.
func TestApplyToAnIndexBehindTheCodeHealsInsteadOfDeadLettering(t *testing.T) {
	e := rmSetup(t, nil)
	ctx := e.ctx()
	e.liveV1()
	p := e.projection()
	snap := readmodeltest.Product{ID: readmodeltest.NewID(), Name: "Healing lamp", Tags: []string{"eco"}}.Snapshot(t)
	err := p.Apply(ctx, snap)
	if !errors.Is(err, elasticsearch.ErrMappingBehind) || errors.Is(err, command.ErrProjectionRejected) {
		t.Fatalf("first Apply = %v, want a transient ErrMappingBehind", err)
	}
	if !strings.Contains(err.Error(), "extended") {
		t.Errorf("the error does not say the index was extended: %v", err)
	}
	if err := p.Apply(ctx, snap); err != nil {
		t.Fatalf("the retry: %v", err)
	}
	e.refresh()
	if d := e.getDoc(snap.ID); !d.Found || d.Source["tags"] == nil {
		t.Fatalf("document %+v", d)
	}
}

package elasticsearch

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	es8 "github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/marketplace/catalog/domain/readmodel"
)

// Errors of index management. Callers (the projector's startup, the rebuild, the admin port)
// decide with errors.Is what to tell an operator.
var (
	// ErrAliasNotFound means the alias does not exist: the read model has never been set up
	// (EnsureAlias does that) or someone removed the alias by hand.
	ErrAliasNotFound = errors.New("search alias not found")
	// ErrAliasConflict means the alias was not where the caller expected it, e.g. a rollback
	// racing a rebuild. Nothing was changed; read the alias again and decide.
	ErrAliasConflict = errors.New("search alias is not where expected")
	// ErrIndexInUse refuses to delete the index the alias points at: readers would lose the
	// read model at once.
	ErrIndexInUse = errors.New("index is the alias target")
	// ErrIndexNotFound means a named index does not exist.
	ErrIndexNotFound = errors.New("index not found")
	// ErrForeignIndex refuses to touch an index whose name is not one of the alias's versioned
	// indices, so index management can never delete or alias someone else's data.
	ErrForeignIndex = errors.New("index does not belong to the search alias")
)

// Indices manages the versioned indices behind the alias: the projector's startup makes sure
// the alias exists (EnsureAlias), a rebuild creates a new index, fills it and switches the alias
// (CreateIndex, RestoreSettings, Count, SwitchAlias), operators list, roll back and prune.
type Indices struct {
	client *es8.Client
	cfg    Config
}

// NewIndices returns the index management of cfg.Alias.
func NewIndices(client *es8.Client, cfg Config) (*Indices, error) {
	if client == nil {
		return nil, errors.New("elasticsearch indices: nil client")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("elasticsearch indices: %w", err)
	}
	return &Indices{client: client, cfg: cfg}, nil
}

// Alias is the alias whose indices this manages.
func (ix *Indices) Alias() string { return ix.cfg.Alias }

// CreateIndexOptions tune a new index.
type CreateIndexOptions struct {
	// BulkLoad creates the index for a rebuild's fill: refresh_interval -1 and no replicas, the
	// fastest way to load millions of documents. RestoreSettings must follow before the alias
	// is switched to it.
	BulkLoad bool
	// Now is the creation time used in the name; zero means the current time. Rebuilds leave
	// it zero; tests set it to provoke name collisions.
	Now time.Time
	// MappingVersion is the mapping of the new index; zero means MappingVersion. An older
	// version recreates an index as an earlier release made it, for upgrade drills and tests;
	// the service itself always creates the current one.
	MappingVersion int
}

// CreateIndex creates a new empty index with the explicit mapping of MappingVersion and returns
// its name. When the name of this second is taken (two creations within one second), the next
// free second is used, so names stay in the documented format and unique. The alias is not
// touched.
func (ix *Indices) CreateIndex(ctx context.Context, opts CreateIndexOptions) (string, error) {
	name, err := ix.create(ctx, opts, false)
	if err != nil {
		return "", fmt.Errorf("create index: %w", err)
	}
	return name, nil
}

func (ix *Indices) create(ctx context.Context, opts CreateIndexOptions, withAlias bool) (string, error) {
	t := opts.Now
	if t.IsZero() {
		t = time.Now()
	}
	t = t.UTC().Truncate(time.Second)
	version := opts.MappingVersion
	if version == 0 {
		version = MappingVersion
	}
	if version < 1 || version > MappingVersion {
		return "", fmt.Errorf("mapping version %d: this release knows 1 to %d", version, MappingVersion)
	}
	body := map[string]any{
		"settings": ix.cfg.indexSettings(opts.BulkLoad),
		"mappings": indexMapping(version),
	}
	if withAlias {
		// is_write_index makes the engine refuse a second index for the alias, which is what
		// makes concurrent EnsureAlias calls converge on one index.
		body["aliases"] = map[string]any{ix.cfg.Alias: map[string]any{"is_write_index": true}}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return "", err
	}
	// By default the cluster answers a create once the new primary shards have started, and a
	// busy cluster (one recovering a node, say) takes longer to start them than our request
	// timeout: the create failed on our side although it went through. So the create answers
	// once the index exists, and the primaries are awaited with health checks of their own.
	clusterTimeout := ix.cfg.RequestTimeout / 2
	const maxSeconds = 60
	for i := range maxSeconds {
		name := readmodel.IndexName(ix.cfg.Alias, version, t.Add(time.Duration(i)*time.Second))
		err := do(ctx, ix.client, ix.cfg.RequestTimeout, esapi.IndicesCreateRequest{
			Index: name, Body: bytes.NewReader(raw), WaitForActiveShards: "0",
			Timeout: clusterTimeout, MasterTimeout: clusterTimeout,
		}, nil)
		if err == nil {
			if err := ix.awaitPrimaries(ctx, name); err != nil {
				return "", fmt.Errorf("%s: %w", name, err)
			}
			return name, nil
		}
		if e, ok := asESError(err); ok && e.hasType("resource_already_exists_exception") {
			continue
		}
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return "", fmt.Errorf("no free index name in %d seconds from %s", maxSeconds, readmodel.IndexName(ix.cfg.Alias, version, t))
}

// EnsureAlias makes sure the alias exists and returns the index it points at. When it does not
// exist, it creates a new index with the explicit mapping and the alias in one request
// (created is true). Processes that start together converge on one index: the engine accepts
// only one write index per alias, and whoever loses reads the winner's alias. An existing
// alias is returned as it is, even when its index has an older mapping version
// (MappingVersionOf): moving to a new mapping is a rebuild's job, never a startup's.
func (ix *Indices) EnsureAlias(ctx context.Context) (index string, created bool, err error) {
	const attempts = 10
	var lastErr error
	for attempt := range attempts {
		target, err := ix.AliasTarget(ctx)
		if err == nil {
			return target, false, nil
		}
		if !errors.Is(err, ErrAliasNotFound) {
			return "", false, fmt.Errorf("ensure alias: %w", err)
		}
		name, err := ix.create(ctx, CreateIndexOptions{}, true)
		if err == nil {
			return name, true, nil
		}
		if !isAliasWriteConflict(err) {
			return "", false, fmt.Errorf("ensure alias: %w", err)
		}
		// Another process created the alias between our read and our create: read it again.
		lastErr = err
		select {
		case <-ctx.Done():
			return "", false, fmt.Errorf("ensure alias: %w", ctx.Err())
		case <-time.After(time.Duration(attempt*10+rand.IntN(20)) * time.Millisecond):
		}
	}
	return "", false, fmt.Errorf("ensure alias: gave up after %d attempts: %w", attempts, lastErr)
}

// ExtendMapping adds to index, an index of the alias with an older mapping version, the fields
// that later versions added and it does not have yet, so that the documents this release
// writes fit its strict mapping; it returns the names of the fields it added (none for an
// index of the current version or one extended before). Adding fields is the one mapping
// change the engine allows in place. It changes no existing field, no document and not the
// version the index was created with (name and _meta keep saying v1): documents written before
// still lack the new fields, so the index stays "behind the code" for status and rollback
// until a rebuild replaces it. The service calls it at startup for the live index, which keeps
// the projector writing during the upgrade window instead of refusing every document for a
// field the old mapping does not know. Safe to call again and from several processes at once.
func (ix *Indices) ExtendMapping(ctx context.Context, index string) ([]string, error) {
	if err := ix.ownIndex(index); err != nil {
		return nil, fmt.Errorf("extend mapping: %w", err)
	}
	version, _, _ := readmodel.ParseIndexName(ix.cfg.Alias, index)
	if version >= MappingVersion {
		return nil, nil
	}
	var res map[string]struct {
		Mappings struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"mappings"`
	}
	err := do(ctx, ix.client, ix.cfg.RequestTimeout, esapi.IndicesGetMappingRequest{Index: []string{index}}, &res)
	if err != nil {
		return nil, fmt.Errorf("extend mapping of %s: %w", index, notFound(err))
	}
	missing := map[string]any{}
	for name, def := range addedSince(version) {
		if _, ok := res[index].Mappings.Properties[name]; !ok {
			missing[name] = def
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	raw, err := json.Marshal(map[string]any{"properties": missing})
	if err != nil {
		return nil, fmt.Errorf("extend mapping of %s: %w", index, err)
	}
	err = do(ctx, ix.client, ix.cfg.RequestTimeout, esapi.IndicesPutMappingRequest{
		Index: []string{index}, Body: bytes.NewReader(raw),
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("extend mapping of %s (v%d) with the fields of v%d: %w", index, version, MappingVersion, notFound(err))
	}
	return slices.Sorted(maps.Keys(missing)), nil
}

// isAliasWriteConflict recognises the engine refusing a second write index for the alias.
// OpenSearch answers it with 500 illegal_state_exception; the type is what counts.
func isAliasWriteConflict(err error) bool {
	e, ok := asESError(err)
	return ok && e.hasType("illegal_state_exception") && strings.Contains(e.Error(), "write index")
}

// RestoreSettings gives an index that was created for bulk loading the settings of a live index
// (refresh interval and replicas of the configuration) and waits until its replicas are
// allocated, so the alias never moves to an index whose shards have a single copy.
func (ix *Indices) RestoreSettings(ctx context.Context, index string) error {
	if err := ix.ownIndex(index); err != nil {
		return fmt.Errorf("restore settings: %w", err)
	}
	raw, err := json.Marshal(ix.cfg.liveSettings())
	if err != nil {
		return fmt.Errorf("restore settings %s: %w", index, err)
	}
	err = do(ctx, ix.client, ix.cfg.RequestTimeout, esapi.IndicesPutSettingsRequest{
		Index: []string{index}, Body: bytes.NewReader(raw),
	}, nil)
	if err != nil {
		return fmt.Errorf("restore settings %s: %w", index, notFound(err))
	}
	if err := ix.awaitReplicas(ctx, index); err != nil {
		return fmt.Errorf("restore settings: %w", err)
	}
	return nil
}

// SwitchAlias moves the alias from one index to another in a single _aliases request, so readers
// and writers see either the old or the new index, never none or both. from must hold the alias
// (must_exist), otherwise nothing changes and ErrAliasConflict is returned; an empty from adds
// the alias where it does not exist yet.
func (ix *Indices) SwitchAlias(ctx context.Context, from, to string) error {
	if err := ix.ownIndex(to); err != nil {
		return fmt.Errorf("switch alias: %w", err)
	}
	if from == to {
		return fmt.Errorf("switch alias: %s to itself: %w", to, ErrAliasConflict)
	}
	var actions []map[string]any
	if from != "" {
		if err := ix.ownIndex(from); err != nil {
			return fmt.Errorf("switch alias: %w", err)
		}
		actions = append(actions, map[string]any{"remove": map[string]any{
			"index": from, "alias": ix.cfg.Alias, "must_exist": true,
		}})
	} else {
		switch target, err := ix.AliasTarget(ctx); {
		case err == nil:
			return fmt.Errorf("switch alias: alias points at %s, not nowhere: %w", target, ErrAliasConflict)
		case !errors.Is(err, ErrAliasNotFound):
			return fmt.Errorf("switch alias: %w", err)
		}
	}
	actions = append(actions, map[string]any{"add": map[string]any{
		"index": to, "alias": ix.cfg.Alias, "is_write_index": true,
	}})
	raw, err := json.Marshal(map[string]any{"actions": actions})
	if err != nil {
		return fmt.Errorf("switch alias: %w", err)
	}
	err = do(ctx, ix.client, ix.cfg.RequestTimeout, esapi.IndicesUpdateAliasesRequest{Body: bytes.NewReader(raw)}, nil)
	if err != nil {
		if e, ok := asESError(err); ok {
			switch {
			case e.hasType("aliases_not_found_exception"), e.hasType("illegal_state_exception"):
				return fmt.Errorf("switch alias %s -> %s: %w: %w", from, to, ErrAliasConflict, err)
			case e.hasType("index_not_found_exception"):
				return fmt.Errorf("switch alias %s -> %s: %w: %w", from, to, ErrIndexNotFound, err)
			}
		}
		return fmt.Errorf("switch alias %s -> %s: %w", from, to, err)
	}
	return nil
}

// AliasTarget returns the index the alias points at, or ErrAliasNotFound.
func (ix *Indices) AliasTarget(ctx context.Context) (string, error) {
	var res map[string]struct {
		Aliases map[string]struct {
			IsWriteIndex *bool `json:"is_write_index"`
		} `json:"aliases"`
	}
	err := do(ctx, ix.client, ix.cfg.RequestTimeout, esapi.IndicesGetAliasRequest{Name: []string{ix.cfg.Alias}}, &res)
	if err != nil {
		if e, ok := asESError(err); ok && e.Status == http.StatusNotFound {
			return "", fmt.Errorf("alias %s: %w", ix.cfg.Alias, ErrAliasNotFound)
		}
		return "", fmt.Errorf("alias %s: %w", ix.cfg.Alias, err)
	}
	var all, writers []string
	for index, v := range res {
		a, ok := v.Aliases[ix.cfg.Alias]
		if !ok {
			continue
		}
		all = append(all, index)
		if a.IsWriteIndex != nil && *a.IsWriteIndex {
			writers = append(writers, index)
		}
	}
	switch {
	case len(all) == 0:
		return "", fmt.Errorf("alias %s: %w", ix.cfg.Alias, ErrAliasNotFound)
	case len(all) == 1:
		return all[0], nil
	case len(writers) == 1:
		return writers[0], nil
	}
	slices.Sort(all)
	return "", fmt.Errorf("alias %s points at %d indices %v and none is the write index", ix.cfg.Alias, len(all), all)
}

// MappingVersionOf returns the mapping version M of one of the alias's indices, parsed from its
// name; ok is false for other names. The projector's startup compares the alias target's
// version with MappingVersion to tell an operator that a rebuild is due.
func (ix *Indices) MappingVersionOf(index string) (version int, ok bool) {
	v, _, ok := readmodel.ParseIndexName(ix.cfg.Alias, index)
	return v, ok
}

// IndexInfo describes one versioned index of the alias.
type IndexInfo struct {
	// Name is the index name, {alias}_v{M}_{YYYYMMDD}_{HHMMSS}.
	Name string
	// MappingVersion is M from the name: which mapping the index was created with.
	MappingVersion int
	// Created is the engine's creation time (the name's time when unavailable).
	Created time.Time
	// Docs is the number of product documents, Live plus Tombstones.
	Docs int64
	// Live is the number of documents of live products.
	Live int64
	// Tombstones is the number of documents of deleted products.
	Tombstones int64
	// Aliased reports whether the alias points at this index: the one readers see now.
	Aliased bool
}

// ListIndices returns the alias's versioned indices, oldest first, with their document counts,
// for operators choosing what to roll back to or prune. Indices of other aliases are ignored.
func (ix *Indices) ListIndices(ctx context.Context) ([]IndexInfo, error) {
	pattern := ix.cfg.Alias + "_v*"
	var settings map[string]struct {
		Settings struct {
			Index struct {
				CreationDate string `json:"creation_date"`
			} `json:"index"`
		} `json:"settings"`
	}
	err := do(ctx, ix.client, ix.cfg.RequestTimeout, esapi.IndicesGetSettingsRequest{
		Index: []string{pattern}, Name: []string{"index.creation_date"},
	}, &settings)
	if err != nil {
		return nil, fmt.Errorf("list indices: %w", err)
	}
	infos := make(map[string]*IndexInfo)
	for name, s := range settings {
		m, created, ok := readmodel.ParseIndexName(ix.cfg.Alias, name)
		if !ok {
			continue
		}
		if ms, err := strconv.ParseInt(s.Settings.Index.CreationDate, 10, 64); err == nil {
			created = time.UnixMilli(ms).UTC()
		}
		infos[name] = &IndexInfo{Name: name, MappingVersion: m, Created: created}
	}
	if len(infos) == 0 {
		return nil, nil
	}
	counts, err := ix.counts(ctx, pattern)
	if err != nil {
		return nil, fmt.Errorf("list indices: %w", err)
	}
	for name, c := range counts {
		if info, ok := infos[name]; ok {
			info.Live, info.Tombstones, info.Docs = c[0], c[1], c[0]+c[1]
		}
	}
	target, err := ix.AliasTarget(ctx)
	if err != nil && !errors.Is(err, ErrAliasNotFound) {
		return nil, fmt.Errorf("list indices: %w", err)
	}
	out := make([]IndexInfo, 0, len(infos))
	for _, info := range infos {
		info.Aliased = info.Name == target
		out = append(out, *info)
	}
	slices.SortFunc(out, func(a, b IndexInfo) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

// counts returns {live, tombstones} per index matching target, from one aggregation. Search
// hits count product documents only (not the hidden nested attribute documents, which
// docs.count of _cat/indices includes).
func (ix *Indices) counts(ctx context.Context, target string) (map[string][2]int64, error) {
	body := map[string]any{
		"size":             0,
		"track_total_hits": true,
		"aggs": map[string]any{
			"by_index": map[string]any{
				"terms": map[string]any{"field": "_index", "size": 10000},
				"aggs": map[string]any{
					"tombstones": map[string]any{"filter": map[string]any{"term": map[string]any{"deleted": true}}},
				},
			},
		},
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	var res struct {
		Aggregations struct {
			ByIndex struct {
				Buckets []struct {
					Key        string `json:"key"`
					DocCount   int64  `json:"doc_count"`
					Tombstones struct {
						DocCount int64 `json:"doc_count"`
					} `json:"tombstones"`
				} `json:"buckets"`
			} `json:"by_index"`
		} `json:"aggregations"`
	}
	ignore, open := true, "open"
	err = do(ctx, ix.client, ix.cfg.RequestTimeout, esapi.SearchRequest{
		Index: []string{target}, Body: bytes.NewReader(raw),
		IgnoreUnavailable: &ignore, ExpandWildcards: open,
	}, &res)
	if err != nil {
		return nil, notFound(err)
	}
	out := make(map[string][2]int64, len(res.Aggregations.ByIndex.Buckets))
	for _, b := range res.Aggregations.ByIndex.Buckets {
		out[b.Key] = [2]int64{b.DocCount - b.Tombstones.DocCount, b.Tombstones.DocCount}
	}
	return out, nil
}

// DeleteIndex deletes one of the alias's old indices (pruning). It refuses the index the
// alias points at (ErrIndexInUse) and any index not named like the alias's indices
// (ErrForeignIndex).
func (ix *Indices) DeleteIndex(ctx context.Context, name string) error {
	if err := ix.ownIndex(name); err != nil {
		return fmt.Errorf("delete index: %w", err)
	}
	target, err := ix.AliasTarget(ctx)
	if err != nil && !errors.Is(err, ErrAliasNotFound) {
		return fmt.Errorf("delete index %s: %w", name, err)
	}
	if target == name {
		return fmt.Errorf("delete index %s: %w", name, ErrIndexInUse)
	}
	err = do(ctx, ix.client, ix.cfg.RequestTimeout, esapi.IndicesDeleteRequest{Index: []string{name}}, nil)
	if err != nil {
		return fmt.Errorf("delete index %s: %w", name, notFound(err))
	}
	return nil
}

// Refresh makes every write to index visible to search now; "" refreshes the alias. Tests and
// a rebuild's validation use it instead of waiting for the refresh interval.
func (ix *Indices) Refresh(ctx context.Context, index string) error {
	target, err := ix.target(index)
	if err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	err = do(ctx, ix.client, ix.cfg.RequestTimeout, esapi.IndicesRefreshRequest{Index: []string{target}}, nil)
	if err != nil {
		return fmt.Errorf("refresh %s: %w", target, notFound(err))
	}
	return nil
}

// Count returns the number of live and tombstone documents of index ("" for the alias) as of
// the last refresh: what a rebuild validates against the source before switching the alias.
func (ix *Indices) Count(ctx context.Context, index string) (live, tombstones int64, err error) {
	target, err := ix.target(index)
	if err != nil {
		return 0, 0, fmt.Errorf("count: %w", err)
	}
	body := []byte(`{"size":0,"track_total_hits":true,"aggs":{"tombstones":{"filter":{"term":{"deleted":true}}}}}`)
	var res struct {
		Hits struct {
			Total struct {
				Value int64 `json:"value"`
			} `json:"total"`
		} `json:"hits"`
		Aggregations struct {
			Tombstones struct {
				DocCount int64 `json:"doc_count"`
			} `json:"tombstones"`
		} `json:"aggregations"`
	}
	err = do(ctx, ix.client, ix.cfg.RequestTimeout, esapi.SearchRequest{
		Index: []string{target}, Body: bytes.NewReader(body),
	}, &res)
	if err != nil {
		return 0, 0, fmt.Errorf("count %s: %w", target, notFound(err))
	}
	tombstones = res.Aggregations.Tombstones.DocCount
	return res.Hits.Total.Value - tombstones, tombstones, nil
}

// target is index, or the alias when index is empty; other names must be the alias's indices.
func (ix *Indices) target(index string) (string, error) {
	if index == "" || index == ix.cfg.Alias {
		return ix.cfg.Alias, nil
	}
	return index, ix.ownIndex(index)
}

// ownIndex refuses names that are not versioned indices of the alias.
func (ix *Indices) ownIndex(name string) error {
	if _, _, ok := readmodel.ParseIndexName(ix.cfg.Alias, name); !ok {
		return fmt.Errorf("%q is not a %s_v{M}_{YYYYMMDD}_{HHMMSS} index: %w", name, ix.cfg.Alias, ErrForeignIndex)
	}
	return nil
}

// notFound adds ErrIndexNotFound to a 404 of the engine.
func notFound(err error) error {
	if e, ok := asESError(err); ok && e.Status == http.StatusNotFound {
		return fmt.Errorf("%w: %w", ErrIndexNotFound, err)
	}
	return err
}

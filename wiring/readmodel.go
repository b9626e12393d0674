package wiring

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/google/wire"

	"github.com/marketplace/catalog/adapters/bleve"
	"github.com/marketplace/catalog/adapters/elasticsearch"
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/ops"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/service"
)

// ReadModel is the search read model the process uses: a search cluster when ELASTICSEARCH_URL
// is set, the embedded engine when it is empty, or the zero value when the process's roles
// need no search (a relay).
type ReadModel struct {
	// Projection writes documents; nil without a read model.
	Projection command.ProductProjection
	// Search reads documents; nil without a read model.
	Search query.ProductSearchReadModel
	// Target is where rebuilds build new indices; nil without a read model.
	Target rebuild.Target
	// Versions tells which versions searches see, for reads that wait for their own writes;
	// nil without a read model.
	Versions query.VisibleVersionsReader
	// Cluster reports the search cluster's health; nil for the embedded engine, which has
	// no cluster.
	Cluster ops.SearchCluster
}

// ReadModelSet provides the search read model.
var ReadModelSet = wire.NewSet(provideReadModel)

func provideReadModel(ctx context.Context, cfg service.Config, log *slog.Logger) (ReadModel, func(), error) {
	if !cfg.NeedsSearch() {
		// A relay-only replica never touches the search cluster, so its outage cannot
		// keep the relay from starting.
		return ReadModel{}, func() {}, nil
	}
	if cfg.ElasticsearchURL == "" {
		return provideEmbeddedReadModel(ctx, cfg, log)
	}
	ecfg := elasticsearchConfig(cfg)
	client, err := elasticsearch.NewClient(ecfg)
	if err != nil {
		return ReadModel{}, nil, err
	}
	indices, err := elasticsearch.NewIndices(client, ecfg)
	if err != nil {
		return ReadModel{}, nil, err
	}
	index, created, err := indices.EnsureAlias(ctx)
	if err != nil {
		return ReadModel{}, nil, searchStartupError(cfg, err)
	}
	log.Info("search read model", "alias", cfg.SearchAlias, "index", index, "created", created, "credentials", ecfg.Credentials)
	extendLiveIndex(ctx, indices, index, log)
	projection, err := elasticsearch.NewProjection(client, ecfg)
	if err != nil {
		return ReadModel{}, nil, err
	}
	search, err := elasticsearch.NewSearch(client, ecfg)
	if err != nil {
		return ReadModel{}, nil, err
	}
	target, err := elasticsearch.NewTarget(client, indices, ecfg)
	if err != nil {
		return ReadModel{}, nil, err
	}
	cleanup := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := projection.Close(ctx); err != nil {
			log.Error("closing the bulk indexer", "err", err)
		}
		if err := target.Close(ctx); err != nil {
			log.Error("closing the rebuild bulk indexer", "err", err)
		}
	}
	return ReadModel{Projection: projection, Search: search, Target: target, Versions: search, Cluster: target}, cleanup, nil
}

// extendLiveIndex gives a live index of an older mapping version the fields this release
// writes, so the projector keeps writing to it until a rebuild replaces it (see
// elasticsearch.Indices.ExtendMapping). It does not stop the start when it fails: the
// projection then waits on such documents (ErrMappingBehind, retried, never dead-lettered)
// and tries again itself, and 'catalog rebuild' ends the wait.
func extendLiveIndex(ctx context.Context, indices *elasticsearch.Indices, index string, log *slog.Logger) {
	v, ok := indices.MappingVersionOf(index)
	if !ok || v >= elasticsearch.MappingVersion {
		return
	}
	added, err := indices.ExtendMapping(ctx, index)
	switch {
	case err != nil:
		log.Error("the live index has an older mapping and could not be given the fields this release writes; the projector retries documents with them until 'catalog rebuild' replaces the index",
			"index", index, "index_mapping_version", v, "code_mapping_version", elasticsearch.MappingVersion, "err", err)
	case len(added) > 0:
		log.Warn("the live index has an older mapping: added the fields this release writes in place; run 'catalog rebuild' to index every document with the current mapping",
			"index", index, "index_mapping_version", v, "code_mapping_version", elasticsearch.MappingVersion, "added", added)
	default:
		log.Warn("the live index has an older mapping; run 'catalog rebuild' to index every document with the current mapping",
			"index", index, "index_mapping_version", v, "code_mapping_version", elasticsearch.MappingVersion)
	}
}

// provideEmbeddedReadModel opens the embedded search engine (Bleve, on disk under
// CATALOG_DATA_DIR/search). The process holds its directory exclusively: a second process on
// the same directory stops here with the reason.
func provideEmbeddedReadModel(ctx context.Context, cfg service.Config, log *slog.Logger) (ReadModel, func(), error) {
	if err := ensureDataDir(cfg); err != nil {
		return ReadModel{}, nil, err
	}
	dir := filepath.Join(cfg.DataDir, "search")
	store, err := bleve.Open(bleve.Config{Dir: dir, Alias: cfg.SearchAlias})
	if err != nil {
		return ReadModel{}, nil, fmt.Errorf("embedded search engine: %w", err)
	}
	index, created, err := store.EnsureAlias(ctx)
	if err != nil {
		_ = store.Close()
		return ReadModel{}, nil, fmt.Errorf("embedded search engine: %w", err)
	}
	log.Warn("EMBEDDED SEARCH ENGINE: the read model lives on this machine's disk; set ELASTICSEARCH_URL for a search cluster",
		"dir", dir, "alias", cfg.SearchAlias, "index", index, "created", created)
	cleanup := func() {
		if err := store.Close(); err != nil {
			log.Error("closing the embedded search engine", "err", err)
		}
	}
	return ReadModel{Projection: store, Search: store, Target: store, Versions: store}, cleanup, nil
}

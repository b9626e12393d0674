// Package elasticsearch is the search read model on an Elasticsearch-API cluster (Elasticsearch 8
// or, with the explicit compatibility opt-in, OpenSearch 2.x): the projection that writes product
// snapshots as versioned documents, the search that reads them, and the index management that
// the projector's startup and the rebuild use (docs/ARCHITECTURE.md, "Guarantees", "Rebuild", "Search index rules").
//
// Rules every type here keeps:
//
//   - Live writes and reads go through the alias (Config.Alias), never a raw index name; writes
//     carry require_alias so a missing alias can never auto-create an index with dynamic mapping.
//   - Documents are written with the aggregate version as external version (external_gte), so
//     replays overwrite, older events lose and order does not matter. Deletes are tombstone
//     documents (deleted: true), never deletions, so a replayed old event cannot resurrect a
//     product even after the engine forgot a deletion (index.gc_deletes).
//   - Indices are named {alias}_v{M}_{YYYYMMDD}_{HHMMSS} (UTC), M = MappingVersion, created with
//     the explicit strict mapping of this package; an alias switch is one _aliases request.
//
// The alias is always the one write index of its single index (is_write_index: true). The
// engine refuses a second write index for an alias, which is what makes EnsureAlias safe when
// several processes start at once.
package elasticsearch

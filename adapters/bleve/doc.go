// Package bleve is the search read model embedded in the catalog process: Bleve
// (github.com/blevesearch/bleve/v2) scorch indexes on local disk under CATALOG_DATA_DIR/search,
// used when ELASTICSEARCH_URL is empty. It implements the same ports as the Elasticsearch
// adapter with the same behaviour (relevance scores aside):
//
//   - command.ProductProjection (Store.Apply): writes through the alias with external-version
//     semantics. An older version never overwrites a newer one, an equal one is a no-op, and
//     deletes are tombstone documents (deleted: true) that keep their version, so a replayed old
//     event can never resurrect a product.
//   - query.ProductSearchReadModel (Store.Search): plain-text search with exact filters,
//     tombstones hidden, four sort orders and opaque cursors (search_after).
//   - rebuild.Target (the other Store methods): versioned indices written by name, id-ordered
//     paging for validation, a conditional atomic alias switch, listing and pruning.
//
// # Layout on disk
//
//	{Dir}/LOCK                               flock(2) held by the one process that owns Dir
//	{Dir}/{alias}.alias.json                 {"index": "<live index>"}: the alias
//	{Dir}/{alias}_v{M}_{YYYYMMDD}_{HHMMSS}/  one scorch index per versioned index
//
// Bleve has no aliases on disk, so the alias is a small JSON file replaced crash-safely (write
// a temporary file, fsync it, rename it over the old one, fsync the directory): after a crash
// it names either the old or the new index, never neither. In memory the Store swaps a pointer
// under a lock, which is what readers and writers resolve the alias through.
//
// # Versions without compare-and-set
//
// Bleve has no external versioning. Every index has exactly one writer goroutine; it reads the
// stored version of each document it is about to write and compares it with the new one before
// putting the document into a Bleve batch. Because that goroutine is the only writer of its
// index, the read-compare-write of one document can never interleave with another write of the
// same document (the per-document serialisation that striped locks would give, for every
// document at once). Concurrent Apply and Write calls are grouped into one batch (group
// commit), and the writer does not wait for a batch to reach the disk before it applies the
// next: scorch persists whatever has been applied since its last persist in one go. A write
// returns only after scorch reports its batch persisted (segment files and the root bolt
// database fsynced), so an acknowledged write survives a crash (TestKillDuringWrites), and it
// is searchable by then: Bleve has no refresh interval. A search may see a write a few
// milliseconds before it is durable; should the process die in between, that write was never
// acknowledged and is delivered again.
//
// # Memory
//
// The process's anonymous memory does not grow with the catalog. Merges stop at MaxSegmentDocs,
// so no merge holds more than that many documents' dictionaries; the writer lets go of a
// batch's analysed documents once the batch is built; and scorch, which reads its segment files
// through read-only mappings, keeps a page it touched resident for as long as the segment is
// open, so every open index hands the pages of its segments back to the page cache every
// ReleaseInterval (madvise MADV_DONTNEED on Linux). Version checks read doc values, so
// validation and verify touch a few bytes per document instead of the stored documents, and
// they read one segment at a time, giving its pages back before the next: the pages they hold
// are one segment's, not a few of every segment's, so they do not grow with the number of
// segments (one per MaxSegmentDocs documents). That matters more than the few kilobytes a
// read needs: the kernel maps the cached pages around a fault (fault-around, 64 KiB) and,
// where the page cache holds a file in large folios (large writes, large readahead), a whole
// folio, so each window a walk leaves behind can cost up to megabytes. The pages are clean and
// shared, so the kernel can take them back under pressure, but they count in the resident set.
//
// # Concurrency between processes
//
// Bleve indexes must not be opened by two processes. Open takes an exclusive, non-blocking
// flock on {Dir}/LOCK and fails with ErrLocked when another catalog process holds it.
package bleve

package elasticsearch

import (
	"github.com/marketplace/catalog/adapters/searchdoc"
	"github.com/marketplace/catalog/domain/product"
)

// MappingVersion is the version M of the mapping below, part of every index name. Any change to
// the mapping must bump it: documents are only ever moved to a new mapping by a rebuild into a
// new index, and the rebuild decides from M whether one is needed.
//
// The versions so far (indexMapping keeps every one):
//
//	1  the first mapping
//	2  tags: a keyword field, for the tags filter and for aggregations
const MappingVersion = 2

// keywordSubField lets a text field be filtered and sorted on exactly. ignore_above keeps an
// unusually long value from failing the document (Lucene's term limit); such a value is still
// searchable as text.
func keywordSubField() map[string]any {
	return map[string]any{"keyword": map[string]any{"type": "keyword", "ignore_above": 256}}
}

// indexMapping is the explicit mapping of a mapping version (1 to MappingVersion; older
// versions are kept because ExtendMapping adds to a live index of an older version what the
// later ones added, and tests recreate the indices earlier releases made). dynamic: strict
// makes a document with a field we did not map fail loudly instead of silently growing the
// mapping. The same mapping works on Elasticsearch 8 and OpenSearch 2.x.
//
// Choices:
//   - price is an object {amount: long, currency: keyword}, the shape of the REST API, amount
//     in minor units (long: prices up to product.MaxAmount exceed 2^31).
//   - attributes are a nested array of {key, value} pairs rather than an object: arbitrary
//     client keys never become mapping fields (no mapping explosion, no strict-mapping
//     rejections), and key/value pairs stay associated in queries.
//   - tags (version 2) are a keyword field holding the list: exact filters and terms
//     aggregations (facets) work on it directly; tags are not part of the full-text search.
//   - id is a keyword field: _id cannot be sorted on in Elasticsearch 8 by default, and every
//     sort needs a unique tiebreaker for search_after.
//   - timestamps are date fields; _source keeps them to the nanosecond (RFC 3339).
func indexMapping(version int) map[string]any {
	props := mappingProperties(version)
	return map[string]any{
		"dynamic":    "strict",
		"_meta":      map[string]any{"mapping_version": version},
		"properties": props,
	}
}

// mappingProperties are the fields of a mapping version.
func mappingProperties(version int) map[string]any {
	text := func() map[string]any {
		return map[string]any{"type": "text", "fields": keywordSubField()}
	}
	keyword := map[string]any{"type": "keyword"}
	date := map[string]any{"type": "date", "format": "strict_date_optional_time||epoch_millis"}
	props := map[string]any{
		"id":          keyword,
		"sku":         keyword,
		"name":        text(),
		"description": map[string]any{"type": "text"},
		"category":    text(),
		"brand":       text(),
		"price": map[string]any{
			"properties": map[string]any{
				"amount":   map[string]any{"type": "long"},
				"currency": keyword,
			},
		},
		"stock": map[string]any{"type": "long"},
		"attributes": map[string]any{
			"type": "nested",
			"properties": map[string]any{
				"key": map[string]any{"type": "keyword", "ignore_above": 256},
				"value": map[string]any{
					"type": "keyword", "ignore_above": 1024,
					"fields": map[string]any{"text": map[string]any{"type": "text"}},
				},
			},
		},
		"version":    map[string]any{"type": "long"},
		"created_at": date,
		"updated_at": date,
		"deleted":    map[string]any{"type": "boolean"},
		"deleted_at": date,
	}
	if version >= 2 {
		props["tags"] = map[string]any{"type": "keyword", "ignore_above": 256}
	}
	return props
}

// addedSince returns the fields that mapping versions after version added, which an index of
// that version lacks. Every change so far only added fields; a future version that changes an
// existing field cannot be applied in place and needs a rebuild alone.
func addedSince(version int) map[string]any {
	old, current := mappingProperties(version), mappingProperties(MappingVersion)
	added := map[string]any{}
	for name, def := range current {
		if _, ok := old[name]; !ok {
			added[name] = def
		}
	}
	return added
}

// document is a product as stored in the index (MappingVersion), shared with the embedded
// engine so both store the same bytes.
type document = searchdoc.Document

// newDocument is the document of a snapshot.
func newDocument(s product.Snapshot) document { return searchdoc.New(s) }

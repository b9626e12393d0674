package bleve

import (
	"encoding/json"
	"fmt"

	"github.com/blevesearch/bleve/v2/analysis/analyzer/custom"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/keyword"
	"github.com/blevesearch/bleve/v2/analysis/token/lowercase"
	"github.com/blevesearch/bleve/v2/analysis/tokenizer/unicode"
	"github.com/blevesearch/bleve/v2/document"
	"github.com/blevesearch/bleve/v2/mapping"

	"github.com/marketplace/catalog/adapters/searchdoc"
	"github.com/marketplace/catalog/domain/product"
)

// MappingVersion is M in index names: the version of the Bleve mapping below. Bump it with every
// change of indexMapping or of the indexed document; the new mapping reaches the alias through
// a rebuild. It is independent of the Elasticsearch adapter's mapping version.
//
// The versions so far (indexMapping keeps every one):
//
//	1  the first mapping
//	2  tags, indexed whole for the tags filter (with doc values, for facets)
//	3  doc values of category_exact, brand_exact and stock (the category, brand and in_stock
//	   facets) and term positions of name (the phrase boost)
//	4  doc values of version and deleted, which the writer's version check, validation and
//	   verify read instead of loading every stored document whole
//
// An index keeps the mapping it was created with, and its documents are mapped with it: a
// document of this release written to an older index simply has its newer fields unindexed
// (dynamic mapping is off), so the projection never fails on an old index; a rebuild makes
// them searchable.
const MappingVersion = 4

// Field names of the Bleve documents.
const (
	fieldName          = "name"
	fieldDescription   = "description"
	fieldCategory      = "category"
	fieldCategoryExact = "category_exact"
	fieldBrand         = "brand"
	fieldBrandExact    = "brand_exact"
	fieldPrice         = "price"
	fieldStock         = "stock"
	fieldCreated       = "created_ms"
	fieldDeleted       = "deleted"
	fieldVersion       = "version"
	fieldAttributes    = "attributes"
	fieldTags          = "tags"
	fieldSource        = "source"
)

// textAnalyzer is the analyzer of the full-text fields and of the search text: Unicode word
// segmentation (UAX #29, every ideograph a word of its own) and lower-casing, without stop
// words or stemming. It is what Elasticsearch's standard analyzer does, so a query matches the
// same documents on both engines.
const textAnalyzer = "catalog_text"

// mappingVersionKey is the internal key under which an index records the mapping version it
// was created with; SwitchAlias checks it against the version in the index name.
var mappingVersionKey = []byte("catalog_mapping_version")

// indexMapping is the explicit mapping of a mapping version (1 to MappingVersion; the older
// ones recreate, in tests, the indices earlier releases made). Dynamic mapping is off: a field that
// is not mapped here is neither indexed nor stored, so documents can never grow the mapping.
//
// Choices:
//   - name, description, category and brand are text (textAnalyzer) for full-text search;
//     category and brand are also indexed whole (keyword analyzer) as category_exact and
//     brand_exact for the exact, case-sensitive filters (Elasticsearch's .keyword sub-fields).
//   - price (amount in minor units), stock and created_ms are numeric. Bleve numbers are
//     float64, exact for integers up to 2^53: product.MaxAmount and MaxStock are far below,
//     and so are Unix milliseconds. created_ms has millisecond precision on purpose: the
//     Elasticsearch date type sorts at that precision, so "newest" breaks ties by id alike.
//     price and created_ms keep doc values for sorting.
//   - deleted is a boolean for the always-on "live only" filter; it is stored for Documents.
//   - version is stored (not indexed): the writer reads it to compare versions, and Documents
//     returns it.
//   - (version 4) version is also indexed and both version and deleted keep doc values: a
//     column of a few bytes per document, which is what the writer, Documents (validation,
//     verify) and VisibleVersions read. Reading them from the stored fields decompresses each
//     document whole, source included, so a verify of 5,000,000 documents mapped the whole
//     index into the process (2.8 GiB resident); Bleve builds doc values only from indexed
//     terms, hence the index.
//   - attributes have arbitrary keys, which an explicit mapping without dynamic fields cannot
//     name; they are indexed as one keyword field of "key=value" terms (exact attribute filters
//     need no mapping change) and are not part of the full-text search, as in Elasticsearch.
//   - tags (version 2) are indexed whole, each a term of one keyword field, with doc values so
//     that facets can count them; like attributes they are not part of the full-text search.
//   - source is the whole document as JSON, stored and not indexed: what search results are
//     built from (Elasticsearch's _source), so the view has every field to the nanosecond.
//   - (version 3) category_exact, brand_exact and stock keep doc values, which the category,
//     brand and in_stock facets count, and name keeps term vectors (positions), which phrase
//     queries need for the phrase boost.
//   - nothing goes into Bleve's composite _all field, and no other field keeps term vectors:
//     the search names its fields, and highlights are made from the stored source.
func indexMapping(version int) (*mapping.IndexMappingImpl, error) {
	if version < 1 || version > MappingVersion {
		return nil, fmt.Errorf("mapping: version %d, this release knows 1 to %d", version, MappingVersion)
	}
	im := mapping.NewIndexMapping()
	if err := im.AddCustomAnalyzer(textAnalyzer, map[string]any{
		"type":          custom.Name,
		"tokenizer":     unicode.Name,
		"token_filters": []any{lowercase.Name},
	}); err != nil {
		return nil, fmt.Errorf("mapping: %w", err)
	}
	im.DefaultAnalyzer = textAnalyzer
	im.IndexDynamic = false
	im.StoreDynamic = false
	im.DocValuesDynamic = false

	text := func() *mapping.FieldMapping {
		f := mapping.NewTextFieldMapping()
		f.Analyzer = textAnalyzer
		f.Store, f.IncludeInAll, f.IncludeTermVectors, f.DocValues = false, false, false, false
		return f
	}
	exact := func(name string) *mapping.FieldMapping {
		f := mapping.NewKeywordFieldMapping()
		f.Name = name
		f.Analyzer = keyword.Name
		f.Store, f.IncludeInAll, f.IncludeTermVectors, f.DocValues = false, false, false, false
		f.SkipFreqNorm = true
		return f
	}
	number := func(sortable bool) *mapping.FieldMapping {
		f := mapping.NewNumericFieldMapping()
		f.Store, f.IncludeInAll, f.DocValues = false, false, sortable
		return f
	}

	doc := mapping.NewDocumentMapping()
	doc.Dynamic = false
	name := text()
	categoryExact, brandExact, stock := exact(fieldCategoryExact), exact(fieldBrandExact), number(false)
	if version >= 3 {
		name.IncludeTermVectors = true
		categoryExact.DocValues, brandExact.DocValues = true, true
		stock.DocValues = true
	}
	doc.AddFieldMappingsAt(fieldName, name)
	doc.AddFieldMappingsAt(fieldDescription, text())
	doc.AddFieldMappingsAt(fieldCategory, text(), categoryExact)
	doc.AddFieldMappingsAt(fieldBrand, text(), brandExact)
	doc.AddFieldMappingsAt(fieldPrice, number(true))
	doc.AddFieldMappingsAt(fieldStock, stock)
	doc.AddFieldMappingsAt(fieldCreated, number(true))

	deleted := mapping.NewBooleanFieldMapping()
	deleted.Store, deleted.IncludeInAll, deleted.DocValues = true, false, version >= versionDocValuesMapping
	doc.AddFieldMappingsAt(fieldDeleted, deleted)

	aggVersion := mapping.NewNumericFieldMapping()
	aggVersion.Store, aggVersion.IncludeInAll = true, false
	aggVersion.Index, aggVersion.DocValues = version >= versionDocValuesMapping, version >= versionDocValuesMapping
	doc.AddFieldMappingsAt(fieldVersion, aggVersion)

	attrs := exact("")
	doc.AddFieldMappingsAt(fieldAttributes, attrs)

	if version >= 2 {
		tags := exact("")
		tags.DocValues = true
		doc.AddFieldMappingsAt(fieldTags, tags)
	}

	source := mapping.NewTextFieldMapping()
	source.Analyzer = keyword.Name
	source.Index, source.Store, source.IncludeInAll, source.IncludeTermVectors, source.DocValues = false, true, false, false, false
	doc.AddFieldMappingsAt(fieldSource, source)

	im.DefaultMapping = doc
	im.TypeMapping = map[string]*mapping.DocumentMapping{}
	if err := im.Validate(); err != nil {
		return nil, fmt.Errorf("mapping: %w", err)
	}
	return im, nil
}

// storedDoc is a product as kept in the source field: the Elasticsearch
// adapter's _source, from the one shared definition.
type storedDoc = searchdoc.Document

// newStoredDoc is the document of a snapshot.
func newStoredDoc(s product.Snapshot) storedDoc { return searchdoc.New(s) }

// fields is what Bleve indexes of a document, keyed by the property names of indexMapping.
func fields(d storedDoc, source []byte) map[string]any {
	attrs := make([]string, len(d.Attributes))
	for i, a := range d.Attributes {
		attrs[i] = a.Key + "=" + a.Value
	}
	return map[string]any{
		fieldName:        d.Name,
		fieldDescription: d.Description,
		fieldCategory:    d.Category,
		fieldBrand:       d.Brand,
		fieldPrice:       float64(d.Price.Amount),
		fieldStock:       float64(d.Stock),
		fieldCreated:     float64(d.CreatedAt.UnixMilli()),
		fieldDeleted:     d.Deleted,
		fieldVersion:     float64(d.Version),
		fieldAttributes:  attrs,
		fieldTags:        d.Tags,
		fieldSource:      string(source),
	}
}

// prepared is a snapshot made ready for an index by the caller's goroutine (encoding and
// mapping cost CPU; the index's single writer only compares versions and commits).
type prepared struct {
	id      string
	version int64
	doc     *document.Document
}

// prepare validates s and maps it with m into a Bleve document.
func prepare(m mapping.IndexMapping, s product.Snapshot) (prepared, error) {
	if s.ID == "" || s.Version < 1 {
		return prepared{}, fmt.Errorf("%q v%d has no id or version", s.ID, s.Version)
	}
	f, err := DocumentFields(s)
	if err != nil {
		return prepared{}, err
	}
	doc := document.NewDocument(string(s.ID))
	if err := m.MapDocument(doc, f); err != nil {
		return prepared{}, fmt.Errorf("map %s v%d: %w", s.ID, s.Version, err)
	}
	return prepared{id: string(s.ID), version: s.Version, doc: doc}, nil
}

// IndexMapping returns a new copy of the Bleve mapping of MappingVersion, for tools and
// benchmarks that build a raw Bleve index shaped like the adapter's (a raw load to compare
// with, say). The adapter's own indices carry it already.
func IndexMapping() (mapping.IndexMapping, error) {
	return indexMapping(MappingVersion)
}

// DocumentFields returns what the adapter indexes for s under IndexMapping: the value it hands
// to Bleve's mapping for the document of s.ID. Like IndexMapping, it exists for raw loads in
// benchmarks, which must index exactly the adapter's documents.
func DocumentFields(s product.Snapshot) (map[string]any, error) {
	d := newStoredDoc(s)
	source, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("bleve document %s v%d: %w", s.ID, s.Version, err)
	}
	return fields(d, source), nil
}

package bleve

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Defaults of Config.
const (
	// DefaultAlias is the read model's alias of the public contract (docs/ARCHITECTURE.md, "Public contract").
	DefaultAlias = "product_search"
	// DefaultFlushInterval is how long an index's writer waits for more writes once it has one,
	// before it commits them as one batch. Zero would commit at once; a short wait lets the
	// projector's concurrent partitions share one persisted batch (one fsync) instead of each
	// paying for its own. Every Apply waits for it, so it is latency added to every write.
	DefaultFlushInterval = time.Millisecond
	// DefaultMaxBatchDocs bounds the documents of one Bleve batch. Larger batches amortise
	// persisting better but hold more memory and delay the writes that arrive meanwhile.
	// Measured on 400,000 documents written in chunks of 5,000 (a rebuild's fill): 500 fills
	// at the rate 2,000 does (12,900 against 12,500 documents/s) with a peak of 243 MiB of
	// anonymous memory against 297 MiB.
	DefaultMaxBatchDocs = 500
	// DefaultMaxSegmentDocs is the largest segment scorch's merges make. It bounds the memory
	// of a merge, and so of the process, whatever the catalog's size (scorch's own limit is
	// five million documents): a merge holds its output's dictionaries in memory and reads
	// (maps) its whole input. Measured on 1,000,000 documents written as a rebuild does
	// (chunks of 5,000 in ascending id order): 100,000 against 250,000 filled in 103 against
	// 111 s, with 43-51 MiB of the merges' input mapped at the peak against 72-86 MiB, and
	// searched as fast (p50 69 against 75 ms). A catalog of N products is
	// searched across roughly N/50,000 to N/100,000 segments plus the small recent ones.
	DefaultMaxSegmentDocs = 100_000
	// DefaultReleaseInterval is how often an open index drops the pages of its segment files
	// from the process's resident memory. A merge reads its input at hundreds of MB/s, so the
	// interval bounds what it holds mapped: at 1s a fill of 1,000,000 documents peaked at 125
	// MiB of mapped segments, at 100ms at 86 MiB. Pages touched again (a search's
	// dictionaries) come back from the page cache at the cost of a minor fault; a tick in
	// which the process mapped nothing new costs one getrusage call.
	DefaultReleaseInterval = 100 * time.Millisecond
)

// MaxDocumentsPage is the largest page Store.Documents returns, the same bound as the
// Elasticsearch adapter's.
const MaxDocumentsPage = 10_000

// Config configures the embedded search read model. Dir is required; setDefaults fills the rest.
type Config struct {
	// Dir is the directory of the embedded search engine, CATALOG_DATA_DIR/search. It is
	// created when missing and owned exclusively by one process (see Open).
	Dir string
	// Alias is the read model's alias (SEARCH_ALIAS); index names derive from it, and the
	// alias file is {Dir}/{Alias}.alias.json, so several aliases may share one Dir.
	Alias string
	// FlushInterval is how long a writer collects concurrent writes before committing them as
	// one batch (0 commits as soon as one write is there; writes that arrive while a batch is
	// being persisted are still grouped into the next one).
	FlushInterval time.Duration
	// MaxBatchDocs is the largest number of documents committed in one Bleve batch; larger
	// Write calls are split.
	MaxBatchDocs int
	// MaxSegmentDocs is the largest number of documents scorch merges into one segment; it
	// bounds the memory a merge takes.
	MaxSegmentDocs int
	// ReleaseInterval is how often an open index returns the pages of its mapped segment files
	// to the page cache, which bounds the process's resident memory whatever the index's size;
	// negative never does.
	ReleaseInterval time.Duration
}

// aliasPattern is what the Elasticsearch adapter accepts as an alias, so that one SEARCH_ALIAS
// works with either engine; it is also safe as a file name.
var aliasPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_\-]{0,200}$`)

func (c *Config) setDefaults() {
	c.Dir = strings.TrimSpace(c.Dir)
	if c.Dir != "" {
		c.Dir = filepath.Clean(c.Dir)
	}
	if strings.TrimSpace(c.Alias) == "" {
		c.Alias = DefaultAlias
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.MaxBatchDocs == 0 {
		c.MaxBatchDocs = DefaultMaxBatchDocs
	}
	if c.MaxSegmentDocs == 0 {
		c.MaxSegmentDocs = DefaultMaxSegmentDocs
	}
	if c.ReleaseInterval == 0 {
		c.ReleaseInterval = DefaultReleaseInterval
	}
}

// Validate reports every problem of a configuration at once, after defaults. A negative
// FlushInterval means no wait at all.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("dir is required (CATALOG_DATA_DIR/search)"))
	}
	if !aliasPattern.MatchString(c.Alias) {
		errs = append(errs, fmt.Errorf("alias %q must be lower-case letters, digits, '_' or '-', starting with a letter or digit", c.Alias))
	}
	if c.FlushInterval > time.Second {
		errs = append(errs, fmt.Errorf("flush interval %s must be at most 1s", c.FlushInterval))
	}
	if c.MaxBatchDocs < 1 || c.MaxBatchDocs > 100_000 {
		errs = append(errs, fmt.Errorf("max batch docs %d must be 1..100000", c.MaxBatchDocs))
	}
	if c.ReleaseInterval > 0 && c.ReleaseInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("release interval %s must be at least 10ms (or negative: never)", c.ReleaseInterval))
	}
	if c.MaxSegmentDocs < 1000 || c.MaxSegmentDocs > 5_000_000 {
		errs = append(errs, fmt.Errorf("max segment docs %d must be 1000..5000000", c.MaxSegmentDocs))
	}
	if len(errs) > 0 {
		return fmt.Errorf("bleve config: %w", errors.Join(errs...))
	}
	return nil
}

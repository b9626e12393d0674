package elasticsearch

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/marketplace/catalog/internal/tlsfiles"
)

// Defaults of Config. They suit a projector that applies one event at a time per partition and
// wants each write confirmed quickly, on a cluster of any size.
const (
	// DefaultAlias is the read model's alias of the public contract (docs/ARCHITECTURE.md, "Public contract").
	DefaultAlias = "product_search"
	// DefaultRefreshInterval keeps search freshness at about a second, the engine's own default,
	// but stated explicitly so a changed cluster default cannot change our freshness.
	DefaultRefreshInterval = time.Second
	// DefaultShards is one primary shard: a product catalogue of millions of small documents fits
	// one shard comfortably, and more shards only make each search fan out further.
	DefaultShards = 1
	// DefaultBulkFlushInterval bounds how long a write waits for company in a bulk request. The
	// projector blocks on every Apply, so this is added to every event's latency; a few
	// milliseconds already batch concurrent partitions together (measured on one OpenSearch
	// node with 12 concurrent writers: 2ms gave the best throughput, 20ms a third of it).
	DefaultBulkFlushInterval = 2 * time.Millisecond
	// DefaultBulkFlushBytes flushes a bulk request early once it is this large; well below the
	// engine's http.max_content_length and small enough to keep one flush fast.
	DefaultBulkFlushBytes = 1 << 20
	// DefaultBulkWorkers is the number of bulk requests in flight at once.
	DefaultBulkWorkers = 2
	// DefaultRequestTimeout bounds one HTTP request to the cluster (time to response headers)
	// and every search or index-management call as a whole.
	DefaultRequestTimeout = 10 * time.Second
	// DefaultMaxRetries is how often the client retries a request that failed with a connection
	// error, 429, 502, 503 or 504 before the error reaches the caller.
	DefaultMaxRetries = 3
	// DefaultAutoExpandReplicas is the replica policy when Config.Replicas is nil: no replica on
	// a single node (the cluster stays green on a laptop and in CI), one replica as soon as a
	// second data node exists (production keeps serving searches when a node dies).
	DefaultAutoExpandReplicas = "0-1"
	// DefaultReplicaWait is how long RestoreSettings waits for replicas that nobody is
	// building before it gives up: the cluster cannot place them.
	DefaultReplicaWait = time.Minute
)

// CompatOpenSearch is the Config.Compat value that lets go-elasticsearch talk to OpenSearch.
const CompatOpenSearch = "opensearch"

// Config configures the search read model adapter. The zero value plus a URL is a working
// production configuration; setDefaults fills the rest.
type Config struct {
	// URL is the cluster's HTTP endpoint (ELASTICSEARCH_URL), e.g. http://127.0.0.1:9200, or
	// several node URLs of one cluster separated by commas (all with the same scheme): the
	// client spreads requests over them and retries on another node when one fails. Only
	// NewClient needs it; the other constructors take a ready client.
	URL string
	// Credentials authenticate the client to the cluster (API key or user and password).
	Credentials Credentials
	// CAFile is a PEM bundle of the CAs that sign the cluster's certificate
	// (ELASTICSEARCH_CA_FILE); empty trusts the system roots.
	CAFile string
	// CAFingerprint pins the cluster's certificate by the SHA-256 fingerprint of a certificate
	// in its chain (ELASTICSEARCH_CA_FINGERPRINT), as Elasticsearch prints it at first start.
	// Without CAFile the chain itself is not verified: the pin is the trust.
	CAFingerprint string
	// Compat is "" for Elasticsearch or "opensearch" (ELASTICSEARCH_COMPAT): an explicit opt-in,
	// never on by default, that makes go-elasticsearch accept a server that does not identify
	// itself as Elasticsearch (docs/ARCHITECTURE.md, "Search index rules").
	Compat string
	// Alias is the read model's alias (SEARCH_ALIAS); index names derive from it, so tests that
	// use their own alias never see each other's indices.
	Alias string
	// RefreshInterval is index.refresh_interval of new indices: how stale search may be after a
	// write. It is written explicitly because the engine's default skips refreshes of idle
	// shards, which makes the first search after a quiet period wait.
	RefreshInterval time.Duration
	// Shards is index.number_of_shards of new indices. A change only takes effect through a
	// rebuild into a new index.
	Shards int
	// Replicas, when set, is a fixed index.number_of_replicas for new indices (0 for a
	// single-node cluster that must stay green, 1+ for production clusters that want a fixed
	// count). Nil uses index.auto_expand_replicas "0-1": no replica on one node, one replica on
	// more, which is what an SRE expects without having to know the cluster size.
	Replicas *int
	// ReplicaWait bounds RestoreSettings' wait for the replicas of an index: it waits as long
	// as shard copies are being built, and fails once none has been for this long while
	// some are still unassigned.
	ReplicaWait time.Duration
	// BulkFlushInterval is how often the shared bulk indexer sends what it has collected. Apply
	// blocks until its document's result is known, so this is latency added to every write.
	BulkFlushInterval time.Duration
	// BulkFlushBytes sends a bulk request early once its body is this large.
	BulkFlushBytes int
	// BulkWorkers is the number of bulk requests that may be in flight concurrently.
	BulkWorkers int
	// RequestTimeout bounds the wait for one HTTP response and each search or index-management
	// call as a whole, so a hung cluster surfaces as an error rather than a stuck caller.
	RequestTimeout time.Duration
	// MaxRetries is how often a request failing with a connection error, 429, 502, 503 or 504 is
	// retried (with exponential backoff) before the error reaches the caller. Zero means
	// DefaultMaxRetries; a negative value disables retries (the caller retries instead).
	MaxRetries int
	// ExtraIndexSettings are further index settings for new indices, e.g. {"index.gc_deletes":
	// "1s"} in tests. They are applied after the settings above and may override them; keys must
	// be index settings (with or without the "index." prefix).
	ExtraIndexSettings map[string]any
}

// Credentials authenticate the client: an API key, or a user and password (basic auth). The
// zero value sends none. Its String, GoString, LogValue and MarshalText never show a secret.
type Credentials struct {
	// APIKey is the base64 "id:key" API key Elastic prints (ELASTICSEARCH_API_KEY).
	APIKey string
	// Username and Password are basic-auth credentials (ELASTICSEARCH_USERNAME,
	// ELASTICSEARCH_PASSWORD).
	Username, Password string
}

// String says which kind of credentials are set, not their secrets.
func (c Credentials) String() string {
	switch {
	case c.APIKey != "":
		return "API key"
	case c.Username != "":
		return fmt.Sprintf("user %q", c.Username)
	}
	return "no credentials"
}

// GoString keeps %#v from printing a secret.
func (c Credentials) GoString() string { return "elasticsearch.Credentials{" + c.String() + "}" }

// LogValue keeps a slog attribute from printing a secret.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalText keeps JSON and text encodings (a whole Config logged as JSON) from printing a
// secret.
func (c Credentials) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

func (c Credentials) validate() error {
	switch {
	case c.APIKey != "" && (c.Username != "" || c.Password != ""):
		return errors.New("credentials: an API key or a user and password, not both")
	case (c.Username == "") != (c.Password == ""):
		return errors.New("credentials: a user needs a password and a password a user")
	}
	return nil
}

// Addresses are the node URLs of URL.
func (c Config) Addresses() []string {
	var out []string
	for _, u := range strings.Split(c.URL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// aliasPattern is what the engine accepts as an index name, restricted so that the derived
// index names {alias}_v{M}_{date}_{time} are valid and can be parsed back.
var aliasPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_\-]{0,200}$`)

// redactURL hides a URL's password; an unparsable one is not shown at all.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func (c *Config) setDefaults() {
	c.URL = strings.TrimSpace(c.URL)
	c.Compat = strings.ToLower(strings.TrimSpace(c.Compat))
	if strings.TrimSpace(c.Alias) == "" {
		c.Alias = DefaultAlias
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = DefaultRefreshInterval
	}
	if c.Shards == 0 {
		c.Shards = DefaultShards
	}
	if c.ReplicaWait == 0 {
		c.ReplicaWait = DefaultReplicaWait
	}
	if c.BulkFlushInterval == 0 {
		c.BulkFlushInterval = DefaultBulkFlushInterval
	}
	if c.BulkFlushBytes == 0 {
		c.BulkFlushBytes = DefaultBulkFlushBytes
	}
	if c.BulkWorkers == 0 {
		c.BulkWorkers = DefaultBulkWorkers
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
}

// Validate reports every problem of a configuration at once, after defaults. It does not
// require URL, which only NewClient uses.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	scheme := ""
	for _, raw := range c.Addresses() {
		u, err := url.Parse(raw)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			errs = append(errs, fmt.Errorf("url %q must be an http or https URL", redactURL(raw)))
		case scheme != "" && u.Scheme != scheme:
			errs = append(errs, errors.New("urls of one cluster must share their scheme"))
		default:
			scheme = u.Scheme
		}
	}
	if err := c.Credentials.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.CAFingerprint != "" {
		if _, err := tlsfiles.ParseSHA256Fingerprint(c.CAFingerprint); err != nil {
			errs = append(errs, fmt.Errorf("CA fingerprint: %w", err))
		}
	}
	if (c.CAFile != "" || c.CAFingerprint != "") && scheme == "http" {
		errs = append(errs, errors.New("a CA file or fingerprint needs https URLs"))
	}
	if c.Compat != "" && c.Compat != CompatOpenSearch {
		errs = append(errs, fmt.Errorf("compat %q must be empty or %q", c.Compat, CompatOpenSearch))
	}
	if !aliasPattern.MatchString(c.Alias) {
		errs = append(errs, fmt.Errorf("alias %q must be lower-case letters, digits, '_' or '-', starting with a letter or digit", c.Alias))
	}
	if c.RefreshInterval < time.Millisecond {
		errs = append(errs, fmt.Errorf("refresh interval %s must be at least 1ms", c.RefreshInterval))
	}
	if c.Shards < 1 || c.Shards > 1024 {
		errs = append(errs, fmt.Errorf("shards %d must be 1..1024", c.Shards))
	}
	if c.Replicas != nil && (*c.Replicas < 0 || *c.Replicas > 32) {
		errs = append(errs, fmt.Errorf("replicas %d must be 0..32", *c.Replicas))
	}
	if c.ReplicaWait < 0 {
		errs = append(errs, fmt.Errorf("replica wait %s must be positive", c.ReplicaWait))
	}
	if c.BulkFlushInterval < 0 {
		errs = append(errs, fmt.Errorf("bulk flush interval %s must be positive", c.BulkFlushInterval))
	}
	if c.BulkFlushBytes < 1024 {
		errs = append(errs, fmt.Errorf("bulk flush bytes %d must be at least 1024", c.BulkFlushBytes))
	}
	if c.BulkWorkers < 1 || c.BulkWorkers > 256 {
		errs = append(errs, fmt.Errorf("bulk workers %d must be 1..256", c.BulkWorkers))
	}
	if c.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("request timeout %s must be positive", c.RequestTimeout))
	}
	if c.MaxRetries > 100 {
		errs = append(errs, fmt.Errorf("max retries %d must be at most 100", c.MaxRetries))
	}
	for k := range c.ExtraIndexSettings {
		if strings.TrimSpace(k) == "" {
			errs = append(errs, errors.New("extra index settings: empty key"))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("elasticsearch config: %w", errors.Join(errs...))
	}
	return nil
}

// indexSettings are the settings of a new index. bulkLoad trades durability of search freshness
// for load speed (no refresh, no replica) until RestoreSettings.
func (c Config) indexSettings(bulkLoad bool) map[string]any {
	s := map[string]any{
		"index.number_of_shards": c.Shards,
		"index.refresh_interval": durationSetting(c.RefreshInterval),
	}
	for k, v := range c.liveReplicaSettings() {
		s[k] = v
	}
	for k, v := range c.ExtraIndexSettings {
		if !strings.HasPrefix(k, "index.") {
			k = "index." + k
		}
		s[k] = v
	}
	if bulkLoad {
		s["index.refresh_interval"] = "-1"
		s["index.auto_expand_replicas"] = "false"
		s["index.number_of_replicas"] = 0
	}
	return s
}

// liveSettings are the dynamic settings an index serving the alias should have; RestoreSettings
// writes them back after a bulk load.
func (c Config) liveSettings() map[string]any {
	s := map[string]any{"index.refresh_interval": durationSetting(c.RefreshInterval)}
	for k, v := range c.liveReplicaSettings() {
		s[k] = v
	}
	return s
}

func (c Config) liveReplicaSettings() map[string]any {
	if c.Replicas != nil {
		return map[string]any{"index.auto_expand_replicas": "false", "index.number_of_replicas": *c.Replicas}
	}
	return map[string]any{"index.auto_expand_replicas": DefaultAutoExpandReplicas}
}

// durationSetting renders a duration the way index settings accept it.
func durationSetting(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

package bleve

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	blevev2 "github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/index/scorch"

	"github.com/marketplace/catalog/adapters/datadir"
	"github.com/marketplace/catalog/application/command"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
)

// Errors of the embedded read model. Callers decide with errors.Is.
var (
	// ErrLocked means another process (another `catalog serve`, say) holds the data directory.
	// It is datadir.ErrLocked, so callers can test either.
	ErrLocked = datadir.ErrLocked
	// ErrClosed is returned by every method after Close: the process is shutting down, and an
	// event being projected must be redelivered to the next consumer.
	ErrClosed = errors.New("search read model is closed")
	// ErrAliasNotFound means the alias does not exist yet (EnsureAlias creates it) or names an
	// index that is gone.
	ErrAliasNotFound = errors.New("search alias not found")
	// ErrIndexInUse refuses to delete the index the alias points at.
	ErrIndexInUse = errors.New("index is the alias target")
	// ErrIndexNotFound means a named index does not exist.
	ErrIndexNotFound = errors.New("index not found")
	// ErrForeignIndex refuses a name that is not one of the alias's versioned indices.
	ErrForeignIndex = errors.New("index does not belong to the search alias")
)

// Store is the embedded search read model over one data directory: the projection
// (command.ProductProjection), the search (query.ProductSearchReadModel) and the rebuild target
// (rebuild.Target) of one alias. It is safe for concurrent use. Open it once per process (the
// directory lock refuses a second process) and Close it on shutdown.
type Store struct {
	cfg  Config
	lock *datadir.Lock

	// adminMu serialises what changes the set of indices or the alias (create, switch,
	// delete), so that the conditions they check still hold when they act.
	adminMu sync.Mutex

	mu      sync.RWMutex // guards the fields below
	indices map[string]*index
	alias   string // the live index; "" when there is no alias
	closed  bool
}

var (
	_ command.ProductProjection    = (*Store)(nil)
	_ query.ProductSearchReadModel = (*Store)(nil)
	_ query.VisibleVersionsReader  = (*Store)(nil)
	_ rebuild.Target               = (*Store)(nil)
)

// aliasFile is what {alias}.alias.json holds.
type aliasFile struct {
	Index   string    `json:"index"`
	Updated time.Time `json:"updated"`
}

// Open opens (creating when missing) the data directory cfg.Dir, takes its exclusive lock, and
// opens every versioned index of cfg.Alias found there. It fails with ErrLocked at once when
// another process holds the directory. Leftovers of a crash (half-created or half-deleted
// indices, temporary alias files) are removed. The alias is whatever the alias file names;
// when there is none, EnsureAlias creates the first index.
func Open(cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bleve open: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("bleve open: %w", err)
	}
	lock, err := datadir.Acquire(cfg.Dir, "search data directory")
	if err != nil {
		return nil, fmt.Errorf("bleve open: %w", err)
	}
	s := &Store{cfg: cfg, lock: lock, indices: map[string]*index{}}
	if err := s.load(); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("bleve open %s: %w", cfg.Dir, err)
	}
	return s, nil
}

// load cleans up after a crash, opens the alias's indices and reads the alias file.
func (s *Store) load() error {
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return err
	}
	tmpPrefix, delPrefix := "."+s.cfg.Alias+"_v", ".deleted-"+s.cfg.Alias+"_v"
	aliasTmp := "." + s.aliasFileName() + ".tmp-"
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, tmpPrefix) || strings.HasPrefix(name, delPrefix) || strings.HasPrefix(name, aliasTmp):
			// A creation, deletion or alias write that a crash interrupted.
			if err := os.RemoveAll(filepath.Join(s.cfg.Dir, name)); err != nil {
				return fmt.Errorf("remove leftover %s: %w", name, err)
			}
		case e.IsDir():
			if _, _, ok := readmodel.ParseIndexName(s.cfg.Alias, name); ok {
				s.indices[name] = openIndex(s.cfg, name, filepath.Join(s.cfg.Dir, name))
			}
		}
	}
	raw, err := os.ReadFile(s.aliasPath())
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("read alias: %w", err)
	}
	var a aliasFile
	if err := json.Unmarshal(raw, &a); err != nil {
		return fmt.Errorf("alias file %s is damaged; remove it and run a rebuild: %w", s.aliasPath(), err)
	}
	if _, ok := s.indices[a.Index]; ok {
		s.alias = a.Index
	}
	// An alias whose index was removed by hand is no alias, as when Elasticsearch deletes an
	// aliased index: a rebuild then creates the alias again.
	return nil
}

func (s *Store) aliasFileName() string { return s.cfg.Alias + ".alias.json" }

func (s *Store) aliasPath() string { return filepath.Join(s.cfg.Dir, s.aliasFileName()) }

// Close waits for queued writes, closes every index and releases the directory lock. Later
// calls fail with ErrClosed.
func (s *Store) Close() error {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	indices := s.indices
	s.indices = map[string]*index{}
	s.mu.Unlock()
	var errs []error
	for _, ix := range indices {
		if err := ix.close(ErrClosed); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.lock.Release(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bleve close: %w", err)
	}
	return nil
}

// Alias is the alias this store serves.
func (s *Store) Alias() string { return s.cfg.Alias }

// Dir is the data directory this store owns.
func (s *Store) Dir() string { return s.cfg.Dir }

// EnsureAlias makes sure the alias exists and returns the index it points at. Without an
// alias it creates a new index with the current mapping and points the alias at it (created
// is true). An existing alias is returned as it is, even when its index has an older mapping
// version: moving to a new mapping is a rebuild's job.
func (s *Store) EnsureAlias(ctx context.Context) (index string, created bool, err error) {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if err := s.checkOpen(); err != nil {
		return "", false, fmt.Errorf("ensure alias: %w", err)
	}
	if cur := s.aliasTarget(); cur != "" {
		return cur, false, nil
	}
	name, err := s.createIndex(ctx, MappingVersion)
	if err != nil {
		return "", false, fmt.Errorf("ensure alias: %w", err)
	}
	if err := s.setAlias(name); err != nil {
		return "", false, fmt.Errorf("ensure alias: %w", err)
	}
	return name, true, nil
}

func (s *Store) checkOpen() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return nil
}

func (s *Store) aliasTarget() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.alias
}

// live returns the index the alias points at.
func (s *Store) live() (*index, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.alias == "" {
		return nil, fmt.Errorf("alias %s: %w", s.cfg.Alias, ErrAliasNotFound)
	}
	return s.indices[s.alias], nil
}

// named returns one of the alias's indices by name.
func (s *Store) named(name string) (*index, error) {
	if err := s.ownIndex(name); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	ix, ok := s.indices[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, ErrIndexNotFound)
	}
	return ix, nil
}

// ownIndex refuses names that are not versioned indices of the alias.
func (s *Store) ownIndex(name string) error {
	if _, _, ok := readmodel.ParseIndexName(s.cfg.Alias, name); !ok {
		return fmt.Errorf("%q is not a %s_v{M}_{YYYYMMDD}_{HHMMSS} index: %w", name, s.cfg.Alias, ErrForeignIndex)
	}
	return nil
}

// createIndex creates a new empty index with the mapping of version (MappingVersion but in
// tests), named after the current second or the next free one. The index is built in a hidden directory, made durable
// and renamed into place, so a crash never leaves a half-created index under a valid name.
// The caller holds adminMu.
func (s *Store) createIndex(ctx context.Context, version int) (string, error) {
	im, err := indexMapping(version)
	if err != nil {
		return "", err
	}
	t := time.Now().UTC().Truncate(time.Second)
	const maxSeconds = 3600
	var name string
	for i := 0; ; i++ {
		if i == maxSeconds {
			return "", fmt.Errorf("no free index name in %d seconds from %s", maxSeconds, readmodel.IndexName(s.cfg.Alias, version, t))
		}
		name = readmodel.IndexName(s.cfg.Alias, version, t.Add(time.Duration(i)*time.Second))
		s.mu.RLock()
		_, taken := s.indices[name]
		s.mu.RUnlock()
		if _, err := os.Lstat(filepath.Join(s.cfg.Dir, name)); taken || err == nil {
			continue
		}
		break
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	final := filepath.Join(s.cfg.Dir, name)
	tmp := filepath.Join(s.cfg.Dir, "."+name)
	_ = os.RemoveAll(tmp)
	bi, err := blevev2.NewUsing(tmp, im, scorch.Name, scorch.Name, nil)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("create %s: %w", name, err)
	}
	if err := bi.SetInternal(mappingVersionKey, []byte(strconv.Itoa(version))); err != nil {
		_ = bi.Close()
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("create %s: %w", name, err)
	}
	if err := bi.Close(); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("create %s: %w", name, err)
	}
	if err := fsyncTree(tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("create %s: sync: %w", name, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("create %s: %w", name, err)
	}
	if err := fsyncPath(s.cfg.Dir); err != nil {
		return "", fmt.Errorf("create %s: sync %s: %w", name, s.cfg.Dir, err)
	}
	ix := openIndex(s.cfg, name, final)
	if ix.openErr != nil {
		return "", fmt.Errorf("create %s: %w", name, ix.openErr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = ix.close(ErrClosed)
		return "", ErrClosed
	}
	s.indices[name] = ix
	return name, nil
}

// aliasWriteHook, when set by a test, is called at each step of an alias write; an error
// stops the write there, as a crash at that point would.
var aliasWriteHook func(step string) error

// setAlias points the alias at name: the alias file is replaced crash-safely (temporary file,
// fsync, rename, fsync of the directory), then the in-memory alias. The caller holds adminMu.
func (s *Store) setAlias(name string) error {
	raw, err := json.Marshal(aliasFile{Index: name, Updated: time.Now().UTC()})
	if err != nil {
		return err
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	tmp := filepath.Join(s.cfg.Dir, "."+s.aliasFileName()+".tmp-"+hex.EncodeToString(suffix[:]))
	hook := func(step string) error {
		if aliasWriteHook == nil {
			return nil
		}
		return aliasWriteHook(step)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write alias: %w", err)
	}
	_, werr := f.Write(raw)
	if werr == nil {
		werr = hook("written")
	}
	if werr == nil {
		werr = f.Sync()
	}
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		if !isHookCrash(err) {
			_ = os.Remove(tmp)
		}
		return fmt.Errorf("write alias: %w", err)
	}
	if err := hook("synced"); err != nil {
		return fmt.Errorf("write alias: %w", err)
	}
	if err := os.Rename(tmp, s.aliasPath()); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write alias: %w", err)
	}
	if err := hook("renamed"); err != nil {
		return fmt.Errorf("write alias: %w", err)
	}
	if err := fsyncPath(s.cfg.Dir); err != nil {
		// The rename happened; whether it survives a power loss is unknown. Readers of this
		// process see the new alias, which is what the file most likely says.
		s.mu.Lock()
		s.alias = name
		s.mu.Unlock()
		return fmt.Errorf("write alias: sync %s: %w", s.cfg.Dir, err)
	}
	s.mu.Lock()
	s.alias = name
	s.mu.Unlock()
	return nil
}

// errHookCrash marks an error a test hook returned to simulate a crash: the temporary file
// stays behind, as it would.
var errHookCrash = errors.New("simulated crash")

func isHookCrash(err error) bool { return errors.Is(err, errHookCrash) }

// Apply stores s as the document of its id in the index the alias points at, unless that
// document already has version s.Version or a newer one (success with nothing to do).
// Tombstones are stored like any other state and hidden from search. Apply returns once the
// document is persisted and searchable; concurrent calls share batches. Errors:
// command.ErrProjectionRejected (wrapped) for a snapshot that can never be stored; anything
// else is transient (no alias yet, the index being replaced, a disk error, ctx done, ErrClosed).
func (s *Store) Apply(ctx context.Context, snap product.Snapshot) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("project %s v%d: %w", snap.ID, snap.Version, err)
	}
	ix, err := s.live()
	if err != nil {
		return fmt.Errorf("project %s v%d: %w", snap.ID, snap.Version, err)
	}
	if ix.openErr != nil {
		return fmt.Errorf("project %s v%d: %w", snap.ID, snap.Version, ix.openErr)
	}
	p, err := ix.prepare(snap)
	if err != nil {
		return fmt.Errorf("project %s v%d: %w: %w", snap.ID, snap.Version, err, command.ErrProjectionRejected)
	}
	if err := ix.write(ctx, []prepared{p}); err != nil {
		return fmt.Errorf("project %s v%d: %w", snap.ID, snap.Version, err)
	}
	return nil
}

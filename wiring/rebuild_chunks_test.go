package wiring_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/postgres"
	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
)

// TestRebuildHoldsNoTransactionLongerThanAChunk: while a database rebuild fills 80,000
// products through the serving process (chunks of 5,000), no transaction of this database is
// ever open for longer than a chunk takes: pg_stat_activity is sampled every 50 ms for the
// whole fill and the oldest xact_start it shows stays young. (A fill read in one snapshot
// transaction, as before chunking, keeps one open for the whole fill, ten seconds and more.)
func TestRebuildHoldsNoTransactionLongerThanAChunk(t *testing.T) {
	rp := startReadPath(t)
	seedSQL(t, rp.db, 80000, "TX")
	client := adminClient(t, rp.cfg.GRPCAddr)
	r := startRebuild(t, client, srcDatabase)

	type sample struct {
		age   time.Duration
		what  string
		phase string
	}
	var (
		mu      sync.Mutex
		oldest  sample
		samples int
		fill    bool
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			var age float64
			var what string
			// Every client session of this database but this one: the rebuild's chunk reads,
			// its validation pages and record saves, and everything else the process does.
			err := rp.db.Pool.QueryRow(context.Background(), `SELECT coalesce(extract(epoch FROM now() - xact_start), 0)::float8,
  coalesce(format('pid %s %s (%s): %s', pid, application_name, state, left(query, 100)), '')
FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND backend_type = 'client backend' AND xact_start IS NOT NULL
ORDER BY xact_start LIMIT 1`).Scan(&age, &what)
			if err != nil && !strings.Contains(err.Error(), "no rows") {
				t.Errorf("sample pg_stat_activity: %v", err)
				return
			}
			rec, gerr := client.GetRebuild(context.Background(), &projectionv1.GetRebuildRequest{Id: r.GetId()})
			phase := ""
			if gerr == nil {
				phase = rec.GetPhase().String()
			}
			mu.Lock()
			samples++
			if phase == phaseFill.String() {
				fill = true
			}
			if d := time.Duration(age * float64(time.Second)); d > oldest.age {
				oldest = sample{age: d, what: what, phase: phase}
			}
			mu.Unlock()
		}
	}()
	final := watchRebuild(t, client, r.GetId(), 5*time.Minute, nil)
	close(stop)
	<-sampled
	if final.GetPhase() != phaseOK {
		t.Fatalf("rebuild ended %s: %s", final.GetPhase(), final.GetError())
	}
	fillTook := time.Duration(0)
	for i, pt := range final.GetPhaseTimings() {
		if pt.GetPhase() == phaseFill && i+1 < len(final.GetPhaseTimings()) {
			fillTook = pt.GetDuration().AsDuration()
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("fill of %d documents took %s; %d samples; the oldest transaction seen was %s old (%s, rebuild in %s)",
		final.GetDocsDone(), fillTook.Round(time.Millisecond), samples, oldest.age.Round(time.Millisecond), oldest.what, oldest.phase)
	if !fill {
		t.Fatal("no sample was taken during the fill")
	}
	// A chunk of 5,000 products is read in tens of milliseconds; 2 s leaves room for a loaded
	// machine and is far below the length of the fill.
	if oldest.age > 2*time.Second {
		t.Errorf("a transaction was open for %s during the rebuild (fill %s): %s", oldest.age.Round(time.Millisecond), fillTook.Round(time.Millisecond), oldest.what)
	}
}

// TestRebuildChunkChangedWhileReadEndsCorrect: while the fill reads the chunk that holds them,
// transactions of the real write path (row and outbox event in one transaction) change two
// products of that chunk and delete two others: they hold the rows when the chunk is read and
// commit right after it, so the chunk carries the old versions into the new index. The
// catch-up, from the offsets captured before the fill, must bring the new versions and the
// tombstones in: before validation (nothing else has written to the new index yet) the new
// index holds exactly what the database holds for them, validation passes, and the rebuild
// succeeds.
func TestRebuildChunkChangedWhileReadEndsCorrect(t *testing.T) {
	rp := startReadPath(t)
	seedSQL(t, rp.db, 3000, "CH")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	repo, err := postgres.NewProductRepository(rp.db, postgres.ProductRepositoryConfig{Topic: rp.cfg.ProductEventsTopic, Lanes: rp.cfg.OutboxLanes}, log)
	if err != nil {
		t.Fatal(err)
	}
	const chunkSize = 500
	var (
		mu      sync.Mutex
		chunks  int
		changed = map[string]bool{}        // id -> deleted
		stale   = map[string]int64{}       // id -> version the chunk carried
		inIndex = map[string]docAtSwitch{} // what the new index held before validation
	)
	wrap := func(src rebuild.ProductSource) rebuild.ProductSource {
		return &changingSource{ProductSource: src, onChunk: func(ctx context.Context, after string, read func() ([]product.Snapshot, error)) ([]product.Snapshot, error) {
			mu.Lock()
			chunks++
			n := chunks
			mu.Unlock()
			if n != 3 {
				return read()
			}
			// The rows of this chunk, as the fill is about to read them.
			rows, err := src.Versions(ctx, after, chunkSize)
			if err != nil {
				return nil, err
			}
			var live []string // seedSQL makes a tenth tombstones, which cannot change
			for _, r := range rows {
				if !r.Deleted {
					live = append(live, r.ID)
				}
			}
			targets := map[string]bool{live[5]: false, live[200]: false, live[20]: true, live[len(live)-1]: true}
			holding := make(chan struct{}, len(targets))
			release := make(chan struct{})
			var wg sync.WaitGroup
			for id, del := range targets {
				wg.Go(func() {
					_, err := repo.Update(context.Background(), product.ID(id), func(_ context.Context, p *product.Product) (*product.Product, error) {
						holding <- struct{}{} // the row is locked, its transaction open
						<-release
						if del {
							return p, p.Delete(time.Now())
						}
						return p, p.ChangeStock(4242, time.Now())
					})
					if err != nil {
						t.Errorf("change %s: %v", id, err)
					}
				})
			}
			for range targets {
				<-holding
			}
			got, err := read() // the chunk's statement runs while the four transactions are open
			close(release)
			wg.Wait()
			mu.Lock()
			for _, p := range got {
				if del, ok := targets[p.ID.String()]; ok {
					changed[p.ID.String()] = del
					stale[p.ID.String()] = p.Version
				}
			}
			mu.Unlock()
			return got, err
		}}
	}
	hook := func(ctx context.Context, index string) {
		mu.Lock()
		defer mu.Unlock()
		docs := dumpIndex(t, rp.esURL, index)
		for id := range changed {
			inIndex[id] = docAtSwitch{doc: docs[id]}
		}
	}
	svc := newRebuildServiceWith(t, rp, rp.esURL, rebuild.Config{BatchSize: chunkSize, BeforeValidate: hook}, wrap)
	started, err := svc.Start(context.Background(), readmodel.SourceDatabase)
	if err != nil {
		t.Fatal(err)
	}
	final := awaitServiceRebuild(t, svc, started.ID)
	if final.Phase != readmodel.PhaseSucceeded {
		t.Fatalf("rebuild ended %s: %s", final.Phase, final.Error)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changed) != 4 {
		t.Fatalf("the chunk read during the changes held %d of the 4 changed products", len(changed))
	}
	db := dbProducts(t, rp.db)
	for id, deleted := range changed {
		row := db[id]
		doc := inIndex[id].doc
		t.Logf("%s: the chunk carried v%d; database v%d deleted=%v; new index before validation v%d deleted=%v", id, stale[id], row.Version, row.Deleted, doc.Version, doc.Deleted)
		if stale[id] >= row.Version {
			t.Errorf("%s: the chunk carried v%d, not older than the committed v%d: the change did not race the read", id, stale[id], row.Version)
		}
		if row.Deleted != deleted || doc.Version != row.Version || doc.Deleted != row.Deleted {
			t.Errorf("%s: the new index held v%d deleted=%v before validation, the database v%d deleted=%v", id, doc.Version, doc.Deleted, row.Version, row.Deleted)
		}
	}
}

// docAtSwitch is what the new index held for a product just before validation.
type docAtSwitch struct{ doc indexDoc }

// changingSource lets a test act around a chunk's read.
type changingSource struct {
	rebuild.ProductSource
	onChunk func(ctx context.Context, after string, read func() ([]product.Snapshot, error)) ([]product.Snapshot, error)
}

func (s *changingSource) Chunk(ctx context.Context, after string, limit int) ([]product.Snapshot, error) {
	return s.onChunk(ctx, after, func() ([]product.Snapshot, error) { return s.ProductSource.Chunk(ctx, after, limit) })
}

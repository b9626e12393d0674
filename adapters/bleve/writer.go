package bleve

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	blevev2 "github.com/blevesearch/bleve/v2"

	"github.com/marketplace/catalog/domain/product"
)

// index is one open versioned index and its single writer goroutine.
type index struct {
	name string
	path string
	cfg  Config
	// bi is the open Bleve index; nil when it could not be opened (openErr), in which case
	// every operation on it fails with openErr until it is deleted or replaced.
	bi      blevev2.Index
	openErr error

	// mu is held shared by every reader and by every submitter while it hands a request to
	// the writer, and exclusively by close: once close holds it, nobody uses bi any more and
	// nobody sends to reqs.
	mu     sync.RWMutex
	closed bool
	// closedErr is what operations fail with once closed: ErrIndexNotFound after a
	// deletion, ErrClosed after the store was closed.
	closedErr error
	reqs      chan *writeReq
	done      chan struct{} // closed when the writer goroutine has ended
	acks      acks          // requests waiting for their batch to be persisted
}

// writeReq is one Apply or one chunk of a Write waiting for its batch's outcome.
type writeReq struct {
	docs []prepared
	done chan error // buffered: the writer never blocks on a caller that gave up
}

// openIndex opens the Bleve index at path and starts its writer. A failure is kept in openErr
// rather than returned, so a damaged index shows up in listings and can be replaced by a
// rebuild or deleted, instead of stopping the whole read model.
func openIndex(cfg Config, name, path string) *index {
	ix := &index{name: name, path: path, cfg: cfg}
	bi, err := blevev2.OpenUsing(path, runtimeConfig(cfg))
	if err != nil {
		ix.openErr = fmt.Errorf("open index %s: %w", name, err)
		ix.closed = true
		return ix
	}
	ix.start(bi)
	return ix
}

// runtimeConfig is the scorch configuration of an open index. unsafe_batch makes Batch return
// once the batch is applied (searchable) instead of once it is persisted; the writer then
// waits for persistence through the batch's persisted callback (see acks), which lets several
// batches share one persist. Nothing is acknowledged before it is on disk.
//
// The merge plan's largest segment is cfg.MaxSegmentDocs instead of scorch's five million: a
// merge holds the dictionaries and postings of the segments it merges in memory, so with the
// default the process's memory grew with the catalog (a 5,000,000-product rebuild peaked at
// 620 MiB of anonymous memory against 339 MiB at 200,000, merging ever larger segments);
// capped, it stays at the size of the largest merge, at the price of more segments per search.
func runtimeConfig(cfg Config) map[string]any {
	return map[string]any{
		"unsafe_batch":           true,
		"scorchMergePlanOptions": map[string]any{"MaxSegmentSize": cfg.MaxSegmentDocs},
	}
}

func (ix *index) start(bi blevev2.Index) {
	ix.bi = bi
	ix.reqs = make(chan *writeReq, 64)
	ix.done = make(chan struct{})
	go ix.run()
	go ix.releaseResident()
}

// prepare maps snap with the index's own mapping (the one it was created with).
func (ix *index) prepare(snap product.Snapshot) (prepared, error) {
	if ix.openErr != nil {
		return prepared{}, ix.openErr
	}
	return prepare(ix.bi.Mapping(), snap)
}

// read runs fn with the open index, unless the index is closed or broken.
func (ix *index) read(fn func(bi blevev2.Index) error) error {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.openErr != nil {
		return ix.openErr
	}
	if ix.closed {
		return fmt.Errorf("index %s: %w", ix.name, ix.closedErr)
	}
	return fn(ix.bi)
}

// write hands docs to the writer in batches of at most MaxBatchDocs and waits until every one
// has been committed and persisted. It returns the first failure; when ctx ends first the
// documents may still be written, which external versions make harmless.
func (ix *index) write(ctx context.Context, docs []prepared) error {
	if len(docs) == 0 {
		return nil
	}
	var reqs []*writeReq
	for start := 0; start < len(docs); start += ix.cfg.MaxBatchDocs {
		end := min(start+ix.cfg.MaxBatchDocs, len(docs))
		reqs = append(reqs, &writeReq{docs: docs[start:end], done: make(chan error, 1)})
	}
	if err := ix.submit(ctx, reqs); err != nil {
		return err
	}
	var first error
	for _, r := range reqs {
		select {
		case err := <-r.done:
			if err != nil && first == nil {
				first = err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return first
}

func (ix *index) submit(ctx context.Context, reqs []*writeReq) error {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if ix.openErr != nil {
		return ix.openErr
	}
	if ix.closed {
		return fmt.Errorf("index %s: %w", ix.name, ix.closedErr)
	}
	for i, r := range reqs {
		select {
		case ix.reqs <- r:
		case <-ctx.Done():
			// What was queued is written anyway; the rest is not.
			for _, rest := range reqs[i:] {
				rest.done <- ctx.Err()
			}
			return ctx.Err()
		}
	}
	return nil
}

// run is the index's only writer: it groups the queued requests into one batch (waiting
// FlushInterval for company once it has one) and commits it. Bleve applies a batch (makes it
// searchable) before it persists it; run goes on with the next batch as soon as one is
// applied, and the requests of a batch are answered when scorch reports it persisted (see
// acks). Batches therefore queue up behind a slow fsync and are persisted together: group
// commit at the disk as well as in the batch. run ends when reqs is closed and drained.
func (ix *index) run() {
	defer close(ix.done)
	maxDocs := ix.cfg.MaxBatchDocs
	for first := range ix.reqs {
		batch := []*writeReq{first}
		n := len(first.docs)
		open := true
		if ix.cfg.FlushInterval > 0 && n < maxDocs {
			timer := time.NewTimer(ix.cfg.FlushInterval)
		wait:
			for n < maxDocs {
				select {
				case r, ok := <-ix.reqs:
					if !ok {
						open = false
						break wait
					}
					batch = append(batch, r)
					n += len(r.docs)
				case <-timer.C:
					break wait
				}
			}
			timer.Stop()
		}
	drain:
		for open && n < maxDocs {
			select {
			case r, ok := <-ix.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
				n += len(r.docs)
			default:
				break drain
			}
		}
		ix.commit(batch)
	}
}

// commit writes the newest version of every document of the requests whose version is higher
// than the stored one, as one Bleve batch. An older or equal version is skipped (success with
// nothing to do). Only this goroutine writes the index, and a batch is applied before Batch
// returns, so the stored version read here cannot change before the write. The requests are
// answered once the batch is persisted; a batch without writes is answered once every batch
// before it is persisted, since the versions it was compared with may not be on disk yet.
func (ix *index) commit(reqs []*writeReq) {
	fail := func(err error) {
		err = fmt.Errorf("index %s: %w", ix.name, err)
		for _, r := range reqs {
			r.done <- err
		}
	}
	b := ix.bi.NewBatch()
	err := readVersions(ix.bi, ix.cfg.Alias, ix.name, func(vr *versionReader) error {
		var ids []string
		for _, req := range reqs {
			for _, p := range req.docs {
				ids = append(ids, p.id)
			}
		}
		known, err := vr.versions(ids)
		if err != nil {
			return err
		}
		for _, req := range reqs {
			for _, p := range req.docs {
				if p.version <= known[p.id] {
					continue
				}
				// A later document of the same id replaces an earlier one within the batch.
				if err := b.IndexAdvanced(p.doc); err != nil {
					return fmt.Errorf("%s: %w", p.id, err)
				}
				known[p.id] = p.version
			}
		}
		return nil
	})
	if err != nil {
		fail(fmt.Errorf("commit: %w", err))
		return
	}
	// From here on the requests need only their answer channels. Bleve analyses a document in
	// place, so a document still referenced from a request (and from the caller's slice, until
	// its whole Write is persisted) keeps its tokens alive: a rebuild's chunk of 5,000
	// documents held 50-90 MiB of them. Dropped, a document lives as long as its batch.
	for _, req := range reqs {
		for i := range req.docs {
			req.docs[i].doc = nil
		}
	}
	if b.Size() == 0 {
		ix.acks.wait(reqs, false)
		return
	}
	seq := ix.acks.wait(reqs, true)
	b.SetPersistedCallback(func(error) { ix.acks.done(seq) })
	if err := ix.bi.Batch(b); err != nil {
		ix.acks.failed(seq, fmt.Errorf("index %s: commit %d documents: %w", ix.name, b.Size(), err))
	}
}

// acks answers write requests in the order their batches were applied, once persisted.
// Scorch persists applied batches in order and calls their persisted callbacks in that order,
// so the callback of batch k means every batch up to k is on disk.
type acks struct {
	mu      sync.Mutex
	last    uint64 // sequence number of the last batch handed to Bleve
	durable uint64 // every batch up to this one is persisted
	pending []ackGroup
}

type ackGroup struct {
	seq  uint64
	reqs []*writeReq
}

// wait queues reqs until the batch they were written in (write: a new batch) or, for
// requests that wrote nothing, every batch so far is persisted; it returns the sequence number
// they wait for.
func (a *acks) wait(reqs []*writeReq, write bool) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if write {
		a.last++
	} else if a.durable >= a.last {
		for _, r := range reqs {
			r.done <- nil
		}
		return a.last
	}
	a.pending = append(a.pending, ackGroup{seq: a.last, reqs: reqs})
	return a.last
}

// done answers every request waiting for seq or an earlier batch.
func (a *acks) done(seq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.durable = max(a.durable, seq)
	n := 0
	for _, g := range a.pending {
		if g.seq > a.durable {
			break
		}
		for _, r := range g.reqs {
			r.done <- nil
		}
		n++
	}
	a.pending = a.pending[n:]
}

// failed answers the requests of batch seq with err: Bleve refused the batch. Requests that
// wrote nothing and wait for the same batch fail too, since the versions they were compared
// with may never reach the disk.
func (a *acks) failed(seq uint64, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	kept := a.pending[:0]
	for _, g := range a.pending {
		if g.seq != seq {
			kept = append(kept, g)
			continue
		}
		for _, r := range g.reqs {
			r.done <- err
		}
	}
	a.pending = kept
}

// settled reports whether no request is waiting.
func (a *acks) settled() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending) == 0
}

// abandon answers every waiting request with err.
func (a *acks) abandon(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, g := range a.pending {
		for _, r := range g.reqs {
			r.done <- err
		}
	}
	a.pending = nil
}

// closeWait bounds how long close waits for applied batches to be persisted.
const closeWait = 30 * time.Second

// close stops accepting work (later calls fail with reason), lets the writer commit what was queued, waits until it is
// persisted and closes the index. Requests still unanswered then (a disk that keeps failing)
// get an error, so their writes are retried by whoever made them.
func (ix *index) close(reason error) error {
	ix.mu.Lock()
	if ix.closed || ix.bi == nil {
		ix.closed = true
		ix.closedErr = reason
		ix.mu.Unlock()
		return nil
	}
	ix.closed, ix.closedErr = true, reason
	close(ix.reqs)
	ix.mu.Unlock()
	<-ix.done
	deadline := time.Now().Add(closeWait)
	for !ix.acks.settled() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	err := ix.bi.Close()
	ix.acks.abandon(fmt.Errorf("index %s closed before the write was persisted: %w", ix.name, ErrClosed))
	if err != nil {
		return fmt.Errorf("close index %s: %w", ix.name, err)
	}
	return nil
}

// fsyncTree fsyncs every file and directory under root, so that a directory renamed into
// place afterwards is complete on disk.
func fsyncTree(root string) error {
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := root + string(os.PathSeparator) + e.Name()
		if e.IsDir() {
			if err := fsyncTree(p); err != nil {
				return err
			}
			continue
		}
		if err := fsyncPath(p); err != nil {
			return err
		}
	}
	return fsyncPath(root)
}

func fsyncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	serr := f.Sync()
	cerr := f.Close()
	return errors.Join(serr, cerr)
}

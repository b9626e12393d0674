package bleve

import (
	"context"
	"testing"
	"time"

	"github.com/blevesearch/bleve/v2/index/scorch"
)

// TestMergesStayWithinMaxSegmentDocs writes many small batches into an index whose merges may
// make segments of at most MaxSegmentDocs documents, and watches scorch's segments while its
// merger works: none may grow past the bound. Without the bound scorch merges up to five
// million documents into one segment, and the memory a merge holds grows with the catalog.
func TestMergesStayWithinMaxSegmentDocs(t *testing.T) {
	const maxDocs, batches, batch = 1000, 40, 1000
	st, err := Open(Config{Dir: t.TempDir(), MaxSegmentDocs: maxDocs, MaxBatchDocs: batch})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name, err := st.CreateIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range batches {
		if err := st.Write(ctx, name, throughputSnapshots(t, batch)); err != nil {
			t.Fatal(err)
		}
	}
	ix, err := st.named(name)
	if err != nil {
		t.Fatal(err)
	}
	adv, err := ix.bi.Advanced()
	if err != nil {
		t.Fatal(err)
	}
	// The merger runs behind the writes; with scorch's default plan its first merge of ten
	// segments happens within a second or two of them, so a few seconds of watching see it.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r, err := adv.Reader()
		if err != nil {
			t.Fatal(err)
		}
		var total, largest uint64
		for _, s := range r.(*scorch.IndexSnapshot).Segments() {
			total += s.Count()
			largest = max(largest, s.Count())
		}
		_ = r.Close()
		if largest > maxDocs {
			t.Fatalf("a segment of %d documents (of %d in the index); MaxSegmentDocs is %d", largest, total, maxDocs)
		}
		if total != batches*batch {
			t.Fatalf("the index holds %d documents, want %d", total, batches*batch)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

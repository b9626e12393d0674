package bleve

import (
	"context"
	"testing"
	"time"
)

// Bleve analyses a document in place, so whoever still references a written document keeps its
// tokens alive. A request lives until its batch is persisted and the caller's slice until the
// whole Write is, which kept every analysed document of a rebuild's chunk in memory (50-90 MiB
// of a fill's heap); once its batch is built, nothing of the writer references a document.
func TestWrittenDocumentsAreNotHeldByTheirRequests(t *testing.T) {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, name := openWithIndex(t, Config{Alias: "held", MaxBatchDocs: 500})
	ix, err := s.named(name)
	if err != nil {
		t.Fatal(err)
	}
	snaps := throughputSnapshots(t, 1_200)
	for round := range 2 { // the second round's versions are not newer: written nowhere
		ps := make([]prepared, len(snaps))
		for i, snap := range snaps {
			if ps[i], err = ix.prepare(snap); err != nil {
				t.Fatal(err)
			}
		}
		if err := ix.write(c, ps); err != nil {
			t.Fatal(err)
		}
		for i, p := range ps {
			if p.doc != nil {
				t.Fatalf("round %d: document %d (%s) is still referenced after its batch", round, i, p.id)
			}
		}
	}
	got, err := s.Documents(c, name, "", MaxDocumentsPage)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(snaps) {
		t.Fatalf("the index holds %d documents, want %d", len(got), len(snaps))
	}
}

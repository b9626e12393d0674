package wiring_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/marketplace/catalog/adapters/elasticsearch"
	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
)

// changeAfterTheSwitch deletes ids[0], renames ids[1] and creates one product in category,
// all through the API (each change at version 1 -> 2), and returns the new product's id.
func changeAfterTheSwitch(t *testing.T, c *component, ids []string, category, renamed string) string {
	t.Helper()
	if r := c.do(t, "DELETE", "/v1/products/"+ids[0], "", "If-Match", "1"); r.status != 204 {
		t.Fatalf("delete %s: %d %v", ids[0], r.status, r.body)
	}
	if r := c.do(t, "PUT", "/v1/products/"+ids[1], productBody(category+"-1", renamed, category, 101, 5), "If-Match", "1"); r.status != 200 {
		t.Fatalf("update %s: %d %v", ids[1], r.status, r.body)
	}
	return product201(t, c, category+"-new", "Newcomer after the switch", category, 900)
}

// rebuiltOver creates n products in category, waits until they are searchable and rebuilds:
// it returns the products, the index before the rebuild and the one after.
func rebuiltOver(t *testing.T, rp *readPath, prefix, category string, n int) (ids []string, first, second string) {
	t.Helper()
	ids = createProducts(t, rp.component, prefix, category, n)
	rp.waitSearch(t, "category="+category+"&size=1", 30*time.Second, "the products", func(p searchPage) bool { return p.Total == int64(n) })
	first = aliasIndex(t, rp.esURL, rp.cfg.SearchAlias)
	second = runRebuild(t, adminClient(t, rp.cfg.GRPCAddr), srcDatabase).GetToIndex()
	return ids, first, second
}

// writeWhile creates products in category until stop is called, and returns how many it made.
func writeWhile(c *component, category string) (stop func() int64) {
	var n atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			code, _, err := tryDo(c.base, "POST", "/v1/products", productBody(fmt.Sprintf("%s-%d", category, i), "Written during the rollback", category, 10, 1))
			if err == nil && code == 201 {
				n.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() int64 { close(done); wg.Wait(); return n.Load() }
}

// TestRollbackServesNoStaleDocuments: after a rebuild a product is deleted, one renamed and
// one created; more are created while `catalog index rollback` runs. The previous index
// stopped receiving events at the switch, so a rollback that only moved the alias would bring
// the deleted product back and lose the new ones. Right after the command returns, search
// shows the database's state; `catalog verify` is clean and `catalog status` healthy.
func TestRollbackServesNoStaleDocuments(t *testing.T) {
	rp := startReadPath(t)
	ids, first, second := rebuiltOver(t, rp, "RBS", "rbstale", 5)

	created := changeAfterTheSwitch(t, rp.component, ids, "rbstale", "Renamed after the switch")
	rp.waitSearch(t, "category=rbstale&size=10", 30*time.Second, "the changes in the rebuilt index", func(p searchPage) bool {
		return p.Total == 5 && !searchHas(p, ids[0]) && searchHas(p, created)
	})

	stopWriting := writeWhile(rp.component, "rbload")
	start := time.Now()
	out, errOut, code := runCLI(t, rp.cfg.GRPCAddr, 2*time.Minute, "index", "rollback")
	took := time.Since(start)
	if code != 0 || !strings.Contains(out, second+" -> "+first) || !strings.Contains(errOut, "caught up") {
		t.Fatalf("catalog index rollback: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	t.Logf("rollback in %s: %s", took.Round(time.Millisecond), strings.TrimSpace(errOut))
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != first {
		t.Fatalf("alias on %s after the rollback, want %s", got, first)
	}
	// At once, without waiting for anything: the rolled-back index serves the current state.
	code, page := rp.search(t, "category=rbstale&size=10")
	if code != 200 || page.Total != 5 || searchHas(page, ids[0]) || !searchHas(page, created) {
		t.Fatalf("search right after the rollback: %d, total %d, deleted product back %v, new product there %v; want 5, the deleted gone and the new one found",
			code, page.Total, searchHas(page, ids[0]), searchHas(page, created))
	}
	if code, page := rp.search(t, "q=renamed&category=rbstale"); code != 200 || page.Total != 1 {
		t.Errorf("the product renamed after the switch: %d, total %d with its new name, want 1", code, page.Total)
	}
	written := stopWriting()
	t.Logf("%d products written while the rollback ran", written)
	rp.waitSearch(t, "category=rbload&size=1", 30*time.Second, "every product written during the rollback", func(p searchPage) bool {
		return p.Total == written
	})
	awaitVerifyClean(t, rp.cfg.GRPCAddr, 60*time.Second)
	if code, stderr := cliExit(t, rp.cfg.GRPCAddr, "status"); code != 0 {
		t.Fatalf("catalog status after the rollback: exit %d: %s", code, stderr)
	}
}

func searchHas(p searchPage, id string) bool {
	for _, it := range p.Items {
		if it.ID == id {
			return true
		}
	}
	return false
}

// TestRollbackRefusedPastRetentionAndStatusReportsAnIndexBehind: when the events the
// previous index misses are gone from Kafka (retention), `catalog index rollback` refuses and
// leaves the alias alone. An operator who moves the alias by hand anyway (as a rollback did
// before it caught up) gets `catalog status` reporting the live index as behind, and it stays
// reported, since nothing can catch it up; `catalog rebuild` is the way out.
func TestRollbackRefusedPastRetentionAndStatusReportsAnIndexBehind(t *testing.T) {
	rp := startReadPath(t)
	ids, first, second := rebuiltOver(t, rp, "RBR", "rbret", 4)
	changeAfterTheSwitch(t, rp.component, ids, "rbret", "Renamed before the retention")
	rp.waitSearch(t, "category=rbret&size=10", 30*time.Second, "the changes", func(p searchPage) bool { return p.Total == 4 && !searchHas(p, ids[0]) })

	// Retention removes every event produced so far.
	adm, closeAdm := admin(t, rp.kafka)
	defer closeAdm()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, rp.cfg.ProductEventsTopic)
	if err != nil {
		t.Fatal(err)
	}
	res, err := adm.DeleteRecords(ctx, ends.Offsets())
	if err != nil {
		t.Fatal(err)
	}
	res.Each(func(r kadm.DeleteRecordsResponse) {
		if r.Err != nil {
			t.Fatalf("delete records of partition %d: %v", r.Partition, r.Err)
		}
	})

	out, errOut, code := runCLI(t, rp.cfg.GRPCAddr, time.Minute, "index", "rollback")
	if code != 1 || !strings.Contains(errOut, "no longer") || !strings.Contains(errOut, "catalog rebuild") {
		t.Fatalf("rollback past retention: exit %d, want 1 with the reason and the way out\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	t.Logf("refused: %s", strings.TrimSpace(errOut))
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != second {
		t.Fatalf("a refused rollback moved the alias to %s", got)
	}

	// By hand, outside catalog.
	ecfg := elasticsearch.Config{URL: rp.esURL, Compat: rp.compat, Alias: rp.cfg.SearchAlias}
	ix := searchIndices(t, ecfg)
	if err := ix.SwitchAlias(ctx, second, first); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second) // longer than the recovery interval: recovery tried and could not help
	code, stderr := cliExit(t, rp.cfg.GRPCAddr, "status")
	if code != 1 || !strings.Contains(stderr, "alias_index_behind") || !strings.Contains(stderr, first) {
		t.Fatalf("catalog status with the alias moved by hand onto the stale index: exit %d, want 1 naming alias_index_behind and %s:\n%s", code, first, stderr)
	}

	if out, errOut, code := runCLI(t, rp.cfg.GRPCAddr, 2*time.Minute, "rebuild", "--wait"); code != 0 {
		t.Fatalf("catalog rebuild --wait: exit %d\n%s\n%s", code, out, errOut)
	}
	awaitVerifyClean(t, rp.cfg.GRPCAddr, 60*time.Second)
	if code, stderr := cliExit(t, rp.cfg.GRPCAddr, "status"); code != 0 {
		t.Fatalf("catalog status after the rebuild: exit %d: %s", code, stderr)
	}
}

// TestRollbackRefusedToAnOutdatedMapping: the index before the rebuild has an older mapping
// than the code writes; it cannot be caught up, so the rollback is refused with that reason
// and the alias stays.
func TestRollbackRefusedToAnOutdatedMapping(t *testing.T) {
	var old string
	rp := startReadPath(t, withOldMappingIndex(&old))
	client := adminClient(t, rp.cfg.GRPCAddr)
	createProducts(t, rp.component, "RBM", "rbmap", 3)
	rp.waitSearch(t, "category=rbmap&size=1", 30*time.Second, "the products", func(p searchPage) bool { return p.Total == 3 })
	current := runRebuild(t, client, srcDatabase).GetToIndex()
	_, err := client.RollbackAlias(context.Background(), &projectionv1.RollbackAliasRequest{})
	if code, reason, _ := errorInfo(err); reason != "ROLLBACK_MAPPING_OUTDATED" || !strings.Contains(err.Error(), "mapping v0") {
		t.Fatalf("rollback to %s (mapping v0): %s / %q (%v), want ROLLBACK_MAPPING_OUTDATED naming the mapping", old, code, reason, err)
	}
	if got := aliasIndex(t, rp.esURL, rp.cfg.SearchAlias); got != current {
		t.Fatalf("a refused rollback moved the alias to %s", got)
	}
}

package bleve_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/bleve"
	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/domain/readmodel"
	"github.com/marketplace/catalog/internal/readmodeltest"
)

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestConfigValidate(t *testing.T) {
	if err := (bleve.Config{Dir: "/tmp/x"}).Validate(); err != nil {
		t.Errorf("minimal config: %v", err)
	}
	err := bleve.Config{Alias: "Bad Alias", FlushInterval: time.Hour, MaxBatchDocs: -1, MaxSegmentDocs: 10, ReleaseInterval: time.Millisecond}.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"dir is required", "alias", "flush interval", "max batch docs", "max segment docs", "release interval"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := bleve.Open(bleve.Config{}); err == nil {
		t.Error("Open without a directory succeeded")
	}
}

func TestIndexName(t *testing.T) {
	got := readmodel.IndexName("product_search", 3, time.Date(2026, 2, 3, 4, 5, 6, 0, time.FixedZone("x", 3600)))
	if got != "product_search_v3_20260203_030506" {
		t.Errorf("IndexName = %s", got)
	}
}

func TestAliasSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	cfg := bleve.Config{Dir: dir, Alias: "reopen"}
	s, err := bleve.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	first, created, err := s.EnsureAlias(ctx(t))
	if err != nil || !created {
		t.Fatalf("EnsureAlias = %s, %v, %v", first, created, err)
	}
	live := readmodeltest.Product{Name: "Persistent kettle", Category: "reopen", Version: 4}.Snapshot(t)
	gone := readmodeltest.Product{Name: "Persistent ghost", Category: "reopen", Version: 2, Deleted: true}.Snapshot(t)
	for _, snap := range []product.Snapshot{live, gone} {
		if err := s.Apply(ctx(t), snap); err != nil {
			t.Fatal(err)
		}
	}
	next, err := s.CreateIndex(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx(t), next, []product.Snapshot{live, gone}); err != nil {
		t.Fatal(err)
	}
	if err := s.SwitchAlias(ctx(t), first, next); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx(t), live); !errors.Is(err, bleve.ErrClosed) {
		t.Errorf("Apply after Close = %v, want ErrClosed", err)
	}

	s = openStore(t, cfg)
	if got, err := s.AliasTarget(ctx(t)); err != nil || got != next {
		t.Fatalf("after reopen alias = %s, %v; want %s", got, err, next)
	}
	again, created, err := s.EnsureAlias(ctx(t))
	if err != nil || created || again != next {
		t.Errorf("EnsureAlias after reopen = %s, %v, %v; want the existing %s", again, created, err, next)
	}
	res, err := s.Search(ctx(t), query.SearchProducts{Category: "reopen"})
	if err != nil || res.Total != 1 || res.Items[0].Name != "Persistent kettle" || res.Items[0].Version != 4 {
		t.Fatalf("search after reopen = %+v, %v", res, err)
	}
	docs, err := s.Documents(ctx(t), next, "", 10)
	if err != nil || len(docs) != 2 {
		t.Fatalf("documents after reopen = %v, %v", docs, err)
	}
	// Versions survive too: older writes still lose.
	older := readmodeltest.Product{ID: live.ID, Name: "Older kettle", Category: "reopen", Version: 3}.Snapshot(t)
	resurrect := readmodeltest.Product{ID: gone.ID, Name: "Persistent ghost", Category: "reopen", Version: 1}.Snapshot(t)
	for _, snap := range []product.Snapshot{older, resurrect} {
		if err := s.Apply(ctx(t), snap); err != nil {
			t.Fatal(err)
		}
	}
	res, _ = s.Search(ctx(t), query.SearchProducts{Category: "reopen"})
	if res.Total != 1 || res.Items[0].Name != "Persistent kettle" {
		t.Errorf("older writes after reopen changed the read model: %+v", res.Items)
	}
	infos, err := s.ListIndices(ctx(t))
	if err != nil || len(infos) != 2 || infos[0].Name != next || !infos[0].Aliased || infos[1].Aliased {
		t.Errorf("ListIndices after reopen = %+v, %v", infos, err)
	}
}

func TestSecondOpenOfADirectoryFails(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, bleve.Config{Dir: dir})
	_, err := bleve.Open(bleve.Config{Dir: dir})
	if !errors.Is(err, bleve.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	for _, want := range []string{dir, "another catalog process holds it", fmt.Sprintf("pid %d", os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// Another alias on the same directory is still the same directory.
	if _, err := bleve.Open(bleve.Config{Dir: dir, Alias: "other"}); !errors.Is(err, bleve.ErrLocked) {
		t.Errorf("Open with another alias = %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := bleve.Open(bleve.Config{Dir: dir})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	_ = again.Close()
}

// helperEnv makes the test binary act as a separate catalog process (TestHelperProcess).
const helperEnv = "BLEVE_TEST_HELPER"

// TestHelperProcess is not a test: run by the tests below in a child process, it opens the
// directory in $BLEVE_TEST_DIR and does what $BLEVE_TEST_HELPER says.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process only")
	}
	dir := os.Getenv("BLEVE_TEST_DIR")
	s, err := bleve.Open(bleve.Config{Dir: dir, Alias: "kill"})
	if err != nil {
		fmt.Printf("OPEN FAILED locked=%v: %v\n", errors.Is(err, bleve.ErrLocked), err)
		os.Exit(3)
	}
	fmt.Println("OPENED")
	switch mode {
	case "open":
		_ = s.Close()
		os.Exit(0)
	case "hold":
		time.Sleep(time.Minute)
		os.Exit(0)
	case "write":
		index, _, err := s.EnsureAlias(context.Background())
		if err != nil {
			fmt.Println("ENSURE FAILED", err)
			os.Exit(4)
		}
		fmt.Println("ALIAS", index)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					id := product.ID(fmt.Sprintf("00000000-0000-7000-8000-%012d", w*1_000_000+i%50))
					v := int64(i/50 + 1)
					snap := readmodeltest.Product{ID: id, Version: v, Name: fmt.Sprintf("Killed %d", i)}.Snapshot(t)
					if err := s.Apply(context.Background(), snap); err != nil {
						fmt.Println("APPLY FAILED", err)
						os.Exit(5)
					}
					mu.Lock()
					fmt.Printf("ACK %s %d\n", id, v)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	os.Exit(0)
}

func helper(t *testing.T, dir, mode string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "BLEVE_TEST_DIR="+dir)
	return cmd
}

func TestSecondProcessOnTheDirectoryFailsAtOnce(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, bleve.Config{Dir: dir, Alias: "kill"})
	start := time.Now()
	out, err := helper(t, dir, "open").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "OPEN FAILED locked=true") ||
		!strings.Contains(string(out), "another catalog process holds it") || !strings.Contains(string(out), dir) {
		t.Fatalf("second process: %v\n%s", err, out)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("second process took %s to fail", d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := helper(t, dir, "open").CombinedOutput(); err != nil || !strings.Contains(string(out), "OPENED") {
		t.Fatalf("after Close the second process could not open: %v\n%s", err, out)
	}
}

func TestLockIsReleasedWhenTheHolderDies(t *testing.T) {
	dir := t.TempDir()
	cmd := helper(t, dir, "hold")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if !strings.HasPrefix(line, "OPENED") {
		_ = cmd.Process.Kill()
		t.Fatalf("holder: %q", line)
	}
	if _, err := bleve.Open(bleve.Config{Dir: dir}); !errors.Is(err, bleve.ErrLocked) {
		t.Errorf("Open while another process holds the directory = %v, want ErrLocked", err)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	s, err := bleve.Open(bleve.Config{Dir: dir})
	if err != nil {
		t.Fatalf("Open after the holder was killed: %v", err)
	}
	_ = s.Close()
}

// TestKillDuringWrites kills a process that writes as fast as it can and checks that every
// write it acknowledged survived, with an alias that still points at a valid index.
func TestKillDuringWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child process")
	}
	dir := t.TempDir()
	for round := range 2 {
		cmd := helper(t, dir, "write")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[string]int64{}
		var alias string
		var n atomic.Int64
		sc := bufio.NewScanner(stdout)
		deadline := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 2 && f[0] == "ALIAS":
				alias = f[1]
			case len(f) == 3 && f[0] == "ACK":
				v, _ := strconv.ParseInt(f[2], 10, 64)
				acked[f[1]] = max(acked[f[1]], v)
				if n.Add(1) == 2000 {
					_ = cmd.Process.Signal(syscall.SIGKILL)
				}
			case len(f) > 0 && f[0] != "OPENED":
				t.Errorf("child: %s", sc.Text())
			}
		}
		deadline.Stop()
		_ = cmd.Wait()
		if len(acked) == 0 {
			t.Fatalf("round %d: the child acknowledged nothing", round)
		}
		s, err := bleve.Open(bleve.Config{Dir: dir, Alias: "kill"})
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		got, err := s.AliasTarget(ctx(t))
		if err != nil || got != alias {
			t.Fatalf("round %d: alias = %s, %v; want %s", round, got, err, alias)
		}
		docs, err := s.Documents(ctx(t), alias, "", bleve.MaxDocumentsPage)
		if err != nil {
			t.Fatal(err)
		}
		stored := map[string]int64{}
		for _, d := range docs {
			stored[d.ID] = d.Version
		}
		lost := 0
		for id, v := range acked {
			if stored[id] < v {
				lost++
				if lost < 5 {
					t.Errorf("round %d: %s acknowledged at v%d, stored v%d", round, id, v, stored[id])
				}
			}
		}
		t.Logf("round %d: %d acknowledged writes of %d documents survived SIGKILL (%d lost)", round, n.Load(), len(acked), lost)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSwitchAliasRefusesForeignAndUnknownIndices(t *testing.T) {
	s := openStore(t, bleve.Config{Alias: "refuse"})
	live, _, err := s.EnsureAlias(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"elsewhere", "refuse_v1_20000101_000000", "refuse"} {
		if err := s.SwitchAlias(ctx(t), live, to); err == nil {
			t.Errorf("SwitchAlias to %q succeeded", to)
		}
	}
	if err := s.DeleteIndex(ctx(t), live); !errors.Is(err, bleve.ErrIndexInUse) {
		t.Errorf("DeleteIndex(live) = %v, want ErrIndexInUse", err)
	}
	if err := s.DeleteIndex(ctx(t), "refuse_v1_20000101_000000"); !errors.Is(err, bleve.ErrIndexNotFound) {
		t.Errorf("DeleteIndex(missing) = %v, want ErrIndexNotFound", err)
	}
	if err := s.DeleteIndex(ctx(t), "../../etc"); !errors.Is(err, bleve.ErrForeignIndex) {
		t.Errorf("DeleteIndex(foreign) = %v, want ErrForeignIndex", err)
	}
}

func TestAManuallyRemovedLiveIndexMeansNoAlias(t *testing.T) {
	dir := t.TempDir()
	cfg := bleve.Config{Dir: dir, Alias: "removed"}
	s, err := bleve.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	live, _, err := s.EnsureAlias(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if err := os.RemoveAll(filepath.Join(dir, live)); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	if _, err := s.AliasTarget(ctx(t)); !errors.Is(err, rebuild.ErrNoAlias) {
		t.Fatalf("AliasTarget = %v, want ErrNoAlias", err)
	}
	// What a rebuild does then: a new index, filled, made the alias.
	next, err := s.CreateIndex(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SwitchAlias(ctx(t), "", next); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Search(ctx(t), query.SearchProducts{}); err != nil {
		t.Fatalf("search after recovery: %v", err)
	}
}

func TestWriteSplitsLargeCallsAndKeepsVersions(t *testing.T) {
	s := openStore(t, bleve.Config{MaxBatchDocs: 7, FlushInterval: -1})
	index, err := s.CreateIndex(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var docs []product.Snapshot
	id := readmodeltest.NewID()
	for i := range 50 {
		docs = append(docs, readmodeltest.Product{Name: fmt.Sprintf("Split %d", i)}.Snapshot(t))
	}
	// The same id in many batches of one call, newest in the middle.
	for _, v := range []int64{3, 9, 5, 1} {
		docs = append(docs[:10*int(v%5)], append([]product.Snapshot{readmodeltest.Product{ID: id, Version: v}.Snapshot(t)}, docs[10*int(v%5):]...)...)
	}
	if err := s.Write(ctx(t), index, docs); err != nil {
		t.Fatal(err)
	}
	got, err := s.Documents(ctx(t), index, "", 100)
	if err != nil || len(got) != 51 {
		t.Fatalf("Documents = %d, %v", len(got), err)
	}
	for _, d := range got {
		if d.ID == string(id) && d.Version != 9 {
			t.Errorf("%s at v%d, want v9", id, d.Version)
		}
	}
}

//go:build drill

package drill

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ack is the newest acknowledged state of a product: the version a 2xx answer reported,
// and whether that write was a delete.
type ack struct {
	version int64
	deleted bool
}

// item is a product the load knows.
type item struct {
	id, sku, token string
	version        int64
	busy           bool
	unsure         bool // the last write's outcome is unknown: read the product before writing it
}

// window is what the load saw during one step.
type window struct {
	start, lastAck time.Time
	maxGap         time.Duration // longest time without an acknowledged write
	ok, failed     int
	searches       int
	searchErrors   int
	behind         int // ticks the workers could not keep up with
	// reasons counts the failed writes and searches by why they failed, so that a failure
	// in a step's report says whether a replica was down or an answer was lost.
	reasons map[string]int
}

// maxReasons bounds the distinct failure reasons a window keeps; the rest count as "other".
const maxReasons = 10

// failures lists the window's failure reasons, most frequent first.
func (w window) failures() string {
	keys := slices.Collect(maps.Keys(w.reasons))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(w.reasons[b]-w.reasons[a], strings.Compare(a, b)) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%dx %s", w.reasons[k], k)
	}
	return strings.Join(parts, "; ")
}

// failureReason says briefly why a request failed: the transport's error without the URL
// (which names the product), or the status and the start of the answer.
func failureReason(op string, res response, err error) string {
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return op + ": " + err.Error()
	}
	body := strings.Join(strings.Fields(string(res.body)), " ")
	if len(body) > 120 {
		body = body[:120] + "..."
	}
	return fmt.Sprintf("%s: %d %s", op, res.status, body)
}

// load is probe-style load through the API replicas: a fixed rate of creates, updates and
// deletes (both with If-Match), spread round-robin over the replicas like a load balancer
// does, with one retry on the other replica when a request cannot be answered (creates carry
// an Idempotency-Key, so the retry is safe), and searches in parallel.
type load struct {
	bases   []string
	rate    int
	client  *http.Client
	rr      atomic.Uint64
	counter atomic.Uint64

	mu     sync.Mutex
	items  map[string]*item
	live   []string // ids of products believed live
	acked  map[string]ack
	win    window
	writes int // acknowledged writes overall

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newLoad(bases []string, rate int) *load {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.DialContext = (&net.Dialer{Timeout: 2 * time.Second}).DialContext
	return &load{bases: bases, rate: rate, client: &http.Client{Transport: tr, Timeout: 10 * time.Second},
		items: map[string]*item{}, acked: map[string]ack{}}
}

// begin starts the load and a new window.
func (l *load) begin() {
	now := time.Now()
	l.mu.Lock()
	l.win = window{start: now, lastAck: now}
	l.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	const workers = 32
	tokens := make(chan struct{}, workers)
	const searchers = 2
	l.wg.Add(1 + workers + searchers)
	go func() {
		defer l.wg.Done()
		defer close(tokens)
		tick := time.NewTicker(time.Second / time.Duration(l.rate))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				select {
				case tokens <- struct{}{}:
				default:
					l.mu.Lock()
					l.win.behind++
					l.mu.Unlock()
				}
			}
		}
	}()
	for range workers {
		go func() {
			defer l.wg.Done()
			for range tokens {
				l.write()
			}
		}()
	}
	for range searchers {
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
					l.search()
				}
			}
		}()
	}
}

// end stops the load, waits for the requests in flight and returns the window.
func (l *load) end() window {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.win
	if gap := time.Since(w.lastAck); gap > w.maxGap {
		w.maxGap = gap
	}
	return w
}

// acknowledged returns a copy of the newest acknowledged state of every product.
func (l *load) acknowledged() map[string]ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]ack, len(l.acked))
	for id, a := range l.acked {
		out[id] = a
	}
	return out
}

func (l *load) recordAck(id string, a ack) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, ok := l.acked[id]; !ok || a.version > prev.version {
		l.acked[id] = a
	}
	if gap := now.Sub(l.win.lastAck); gap > l.win.maxGap {
		l.win.maxGap = gap
	}
	l.win.lastAck = now
	l.win.ok++
	l.writes++
}

func (l *load) recordFailure(reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.win.failed++
	l.win.addReason(reason)
}

func (w *window) addReason(reason string) {
	if w.reasons == nil {
		w.reasons = map[string]int{}
	}
	if _, ok := w.reasons[reason]; !ok && len(w.reasons) >= maxReasons {
		reason = "other"
	}
	w.reasons[reason]++
}

// response is one answered request.
type response struct {
	status int
	body   []byte
}

// send sends a request to the next replica and, when that one cannot answer (connection
// refused or reset, a timeout, 502-504), once more to the other one.
func (l *load) send(method, path string, body []byte, header map[string]string) (response, error) {
	first := int(l.rr.Add(1))
	var lastErr error
	for i := range len(l.bases) {
		base := l.bases[(first+i)%len(l.bases)]
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequest(method, base+path, rd)
		if err != nil {
			return response{}, err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		res, err := l.client.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		raw, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			lastErr = err
			continue
		}
		if res.StatusCode == http.StatusBadGateway || res.StatusCode == http.StatusServiceUnavailable || res.StatusCode == http.StatusGatewayTimeout {
			lastErr = fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, raw)
			continue
		}
		return response{status: res.StatusCode, body: raw}, nil
	}
	return response{}, lastErr
}

// write performs one write: a create while there are few products or by chance, otherwise
// an update or a delete of a product nobody else is writing.
func (l *load) write() {
	l.mu.Lock()
	var it *item
	if len(l.live) >= 300 && rand.IntN(100) >= 35 {
		for range 8 {
			cand := l.items[l.live[rand.IntN(len(l.live))]]
			if !cand.busy {
				it = cand
				break
			}
		}
	}
	if it != nil {
		it.busy = true
	}
	l.mu.Unlock()
	if it == nil {
		l.create()
		return
	}
	defer func() {
		l.mu.Lock()
		it.busy = false
		l.mu.Unlock()
	}()
	if it.unsure && !l.resync(it) {
		return
	}
	if rand.IntN(100) < 30 {
		l.remove(it)
	} else {
		l.update(it)
	}
}

type productJSON struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
}

func (l *load) body(it *item) []byte {
	b, _ := json.Marshal(map[string]any{
		"sku": it.sku, "name": "Drill item " + it.token, "description": "written by the scale-out drill",
		"category": []string{"tools", "garden", "kitchen"}[rand.IntN(3)], "brand": "Drill",
		"price": map[string]any{"amount": 100 + rand.IntN(100_000), "currency": "EUR"}, "stock": rand.IntN(50),
		"attributes": map[string]string{"run": "drill"},
	})
	return b
}

func (l *load) create() {
	n := l.counter.Add(1)
	token := "dr" + strconv.FormatUint(n, 36) + "x" + strconv.FormatUint(rand.Uint64N(1<<30), 36)
	it := &item{sku: "DRILL-" + token, token: token}
	res, err := l.send(http.MethodPost, "/v1/products", l.body(it), map[string]string{"Idempotency-Key": "drill-" + token})
	if err != nil || res.status != http.StatusCreated {
		l.recordFailure(failureReason("create", res, err))
		return
	}
	var p productJSON
	if err := json.Unmarshal(res.body, &p); err != nil || p.ID == "" {
		l.recordFailure(failureReason("create", res, errors.New("answer without an id")))
		return
	}
	it.id, it.version = p.ID, p.Version
	l.mu.Lock()
	l.items[it.id] = it
	l.live = append(l.live, it.id)
	l.mu.Unlock()
	l.recordAck(it.id, ack{version: p.Version})
}

func (l *load) update(it *item) {
	res, err := l.send(http.MethodPut, "/v1/products/"+it.id, l.body(it), map[string]string{"If-Match": strconv.Quote(strconv.FormatInt(it.version, 10))})
	switch {
	case err != nil:
		it.unsure = true
		l.recordFailure(failureReason("update", res, err))
	case res.status == http.StatusOK:
		var p productJSON
		if json.Unmarshal(res.body, &p) != nil || p.Version == 0 {
			it.unsure = true
			l.recordFailure(failureReason("update", res, errors.New("answer without a version")))
			return
		}
		it.version = p.Version
		l.recordAck(it.id, ack{version: p.Version})
	default:
		// 409: an earlier write whose answer was lost went through; 410: it was a delete.
		it.unsure = true
		l.recordFailure(failureReason("update", res, nil))
	}
}

func (l *load) remove(it *item) {
	res, err := l.send(http.MethodDelete, "/v1/products/"+it.id, nil, map[string]string{"If-Match": strconv.Quote(strconv.FormatInt(it.version, 10))})
	switch {
	case err != nil:
		it.unsure = true
		l.recordFailure(failureReason("delete", res, err))
	case res.status == http.StatusNoContent:
		l.forget(it)
		l.recordAck(it.id, ack{version: it.version + 1, deleted: true})
	default:
		it.unsure = true
		l.recordFailure(failureReason("delete", res, nil))
	}
}

// resync reads a product whose last write has an unknown outcome; false when it is gone (or
// cannot be read now).
func (l *load) resync(it *item) bool {
	res, err := l.send(http.MethodGet, "/v1/products/"+it.id, nil, nil)
	if err != nil {
		return false
	}
	switch res.status {
	case http.StatusOK:
		var p productJSON
		if json.Unmarshal(res.body, &p) != nil {
			return false
		}
		it.version, it.unsure = p.Version, false
		return true
	case http.StatusGone, http.StatusNotFound:
		l.forget(it)
	}
	return false
}

// forget drops a deleted product from the live set.
func (l *load) forget(it *item) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, id := range l.live {
		if id == it.id {
			l.live[i] = l.live[len(l.live)-1]
			l.live = l.live[:len(l.live)-1]
			break
		}
	}
	delete(l.items, it.id)
}

// search runs one search for a known product's token; any answer but 200 is an error.
func (l *load) search() {
	l.mu.Lock()
	token := "lamp"
	if len(l.live) > 0 {
		token = l.items[l.live[rand.IntN(len(l.live))]].token
	}
	l.mu.Unlock()
	res, err := l.send(http.MethodGet, "/v1/products/search?size=5&q="+token, nil, nil)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.win.searches++
	if err != nil || res.status != http.StatusOK {
		l.win.searchErrors++
		l.win.addReason(failureReason("search", res, err))
	}
}

// searchable checks through the API that sample live products are found by their token.
func (l *load) searchable(sample int) (checked int, missing []string, err error) {
	l.mu.Lock()
	var picks []*item
	for _, i := range rand.Perm(len(l.live)) {
		if len(picks) == sample {
			break
		}
		picks = append(picks, l.items[l.live[i]])
	}
	l.mu.Unlock()
	for _, it := range picks {
		res, err := l.send(http.MethodGet, "/v1/products/search?size=5&q="+it.token, nil, nil)
		if err != nil {
			return checked, missing, err
		}
		if res.status != http.StatusOK {
			return checked, missing, errors.New("search: " + strconv.Itoa(res.status) + " " + string(res.body))
		}
		var page struct {
			Items []productJSON `json:"items"`
		}
		if err := json.Unmarshal(res.body, &page); err != nil {
			return checked, missing, err
		}
		found := false
		for _, p := range page.Items {
			found = found || (p.ID == it.id && p.Version >= it.version)
		}
		if !found {
			missing = append(missing, it.id)
		}
		checked++
	}
	return checked, missing, nil
}

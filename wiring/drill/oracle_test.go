//go:build drill

package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// state is a product's (version, deleted) in Postgres or in the index.
type state struct {
	version int64
	deleted bool
}

// verdict is the oracle's comparison of the index behind the alias with Postgres and with
// the acknowledged writes.
type verdict struct {
	rows, docs int
	// lost: acknowledged writes whose version the index does not have (missing or older).
	lost int
	// stale: rows whose document is missing or older than the row.
	stale int
	// phantom: documents without a row, or with a version the row never had.
	phantom int
	// resurrected: deleted rows whose document is live, so search shows them.
	resurrected int
	examples    []string
}

func (v verdict) clean() bool { return v.lost+v.stale+v.phantom+v.resurrected == 0 }

func (v verdict) String() string {
	return fmt.Sprintf("rows=%d docs=%d lost=%d stale=%d phantom=%d resurrected=%d", v.rows, v.docs, v.lost, v.stale, v.phantom, v.resurrected)
}

// oracle reads the truth and the read model.
type oracle struct {
	pool   *pgxpool.Pool
	search []string // the search nodes; the alias is read through the first that answers
	alias  string
	client *http.Client
}

// judge compares Postgres, the index behind the alias and the acknowledged writes.
func (o *oracle) judge(ctx context.Context, acked map[string]ack) (verdict, error) {
	rows, err := o.rows(ctx)
	if err != nil {
		return verdict{}, err
	}
	docs, err := o.docs(ctx)
	if err != nil {
		return verdict{}, err
	}
	v := verdict{rows: len(rows), docs: len(docs)}
	example := func(format string, args ...any) {
		if len(v.examples) < 5 {
			v.examples = append(v.examples, fmt.Sprintf(format, args...))
		}
	}
	for id, a := range acked {
		d, ok := docs[id]
		if !ok || d.version < a.version {
			v.lost++
			example("lost %s: acknowledged v%d (deleted %v), index %+v (present %v)", id, a.version, a.deleted, d, ok)
		}
	}
	for id, r := range rows {
		d, ok := docs[id]
		switch {
		case !ok || d.version < r.version:
			v.stale++
			example("stale %s: row v%d, index %+v (present %v)", id, r.version, d, ok)
		case d.version > r.version:
			v.phantom++
			example("phantom %s: row v%d, index v%d", id, r.version, d.version)
		case r.deleted && !d.deleted:
			v.resurrected++
			example("resurrected %s: deleted at v%d, live in the index", id, r.version)
		}
	}
	for id := range docs {
		if _, ok := rows[id]; !ok {
			v.phantom++
			example("phantom %s: no row", id)
		}
	}
	return v, nil
}

func (o *oracle) rows(ctx context.Context) (map[string]state, error) {
	rs, err := o.pool.Query(ctx, `SELECT id::text, version, deleted_at IS NOT NULL FROM products`)
	if err != nil {
		return nil, fmt.Errorf("oracle: read products: %w", err)
	}
	defer rs.Close()
	out := map[string]state{}
	for rs.Next() {
		var id string
		var s state
		if err := rs.Scan(&id, &s.version, &s.deleted); err != nil {
			return nil, err
		}
		out[id] = s
	}
	return out, rs.Err()
}

// docs reads every document behind the alias (refreshed first), paging by id.
func (o *oracle) docs(ctx context.Context) (map[string]state, error) {
	if _, err := o.do(ctx, http.MethodPost, "/"+o.alias+"/_refresh", nil); err != nil {
		return nil, err
	}
	out := map[string]state{}
	var after []any
	for {
		body := map[string]any{
			"size": 5000, "sort": []any{map[string]any{"id": "asc"}}, "version": true,
			"_source": []string{"deleted"}, "query": map[string]any{"match_all": map[string]any{}},
		}
		if after != nil {
			body["search_after"] = after
		}
		raw, err := o.do(ctx, http.MethodPost, "/"+o.alias+"/_search", body)
		if err != nil {
			return nil, err
		}
		var res struct {
			Shards struct {
				Failed int `json:"failed"`
			} `json:"_shards"`
			Hits struct {
				Hits []struct {
					ID      string `json:"_id"`
					Version int64  `json:"_version"`
					Sort    []any  `json:"sort"`
					Source  struct {
						Deleted bool `json:"deleted"`
					} `json:"_source"`
				} `json:"hits"`
			} `json:"hits"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			return nil, fmt.Errorf("oracle: decode search: %w", err)
		}
		if res.Shards.Failed > 0 {
			return nil, fmt.Errorf("oracle: %d shards failed: %s", res.Shards.Failed, raw)
		}
		for _, h := range res.Hits.Hits {
			out[h.ID] = state{version: h.Version, deleted: h.Source.Deleted}
		}
		if len(res.Hits.Hits) < 5000 {
			return out, nil
		}
		after = res.Hits.Hits[len(res.Hits.Hits)-1].Sort
	}
}

func (o *oracle) do(ctx context.Context, method, path string, body any) ([]byte, error) {
	var payload []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		payload = b
	}
	var res *http.Response
	var err error
	for _, node := range o.search {
		var req *http.Request
		if req, err = http.NewRequestWithContext(ctx, method, node+path, bytes.NewReader(payload)); err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		if res, err = o.client.Do(req); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("oracle: %s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode >= 300 {
		return nil, fmt.Errorf("oracle: %s %s: %d %s", method, path, res.StatusCode, strings.TrimSpace(string(raw)))
	}
	return raw, nil
}

// converge judges until the index matches Postgres and every acknowledged write, and returns
// how long that took and the last verdict (not clean when timeout passed first).
func (o *oracle) converge(ctx context.Context, acked map[string]ack, timeout time.Duration, progress func(verdict)) (time.Duration, verdict, error) {
	start := time.Now()
	reported := start
	var last verdict
	var lastErr error
	for {
		v, err := o.judge(ctx, acked)
		if err == nil {
			last, lastErr = v, nil
			if v.clean() {
				return time.Since(start), v, nil
			}
			if time.Since(reported) > 10*time.Second {
				progress(v)
				reported = time.Now()
			}
		} else {
			lastErr = err
		}
		if time.Since(start) > timeout {
			return time.Since(start), last, lastErr
		}
		select {
		case <-ctx.Done():
			return time.Since(start), last, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

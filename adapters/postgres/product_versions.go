package postgres

import (
	"context"
	"fmt"

	"github.com/marketplace/catalog/application/query"
	"github.com/marketplace/catalog/domain/product"
)

var _ query.VisibleVersionsReader = (*ProductRepository)(nil)

// VisibleVersions returns the stored version of each probed product, tombstones included
// (query.VisibleVersionsReader), in one query by primary key: reads by id come from this
// table, which has a write as soon as its transaction commits. Route is ignored.
func (r *ProductRepository) VisibleVersions(ctx context.Context, probes []query.VersionProbe) (map[query.VersionProbe]int64, error) {
	ids := make([]string, 0, len(probes))
	for _, p := range probes {
		ids = append(ids, string(p.ID))
	}
	rows, err := r.db.Pool.Query(ctx, `SELECT id::text, version FROM products WHERE id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("product versions: %w", err)
	}
	defer rows.Close()
	versions := map[product.ID]int64{}
	for rows.Next() {
		var (
			id string
			v  int64
		)
		if err := rows.Scan(&id, &v); err != nil {
			return nil, fmt.Errorf("product versions: %w", err)
		}
		versions[product.ID(id)] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("product versions: %w", err)
	}
	out := make(map[query.VersionProbe]int64, len(probes))
	for _, p := range probes {
		if v, ok := versions[p.ID]; ok {
			out[p] = v
		}
	}
	return out, nil
}

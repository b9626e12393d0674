package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/domain/product"
)

// ProductRepositoryConfig configures the product repository.
type ProductRepositoryConfig struct {
	// Topic is the Kafka topic events are destined for (PRODUCT_EVENTS_TOPIC).
	Topic string
	// Lanes is the number of outbox lanes; see DefaultLanes.
	Lanes int
	// Decorate, when set, may add metadata (for example the W3C trace context) to every event
	// message before it is written to the outbox.
	Decorate func(ctx context.Context, msg *message.Message)
}

func (c *ProductRepositoryConfig) setDefaults() {
	if c.Topic == "" {
		c.Topic = "product.events"
	}
	if c.Lanes == 0 {
		c.Lanes = DefaultLanes
	}
}

// Validate reports a configuration that cannot work.
func (c ProductRepositoryConfig) Validate() error {
	if c.Lanes < 1 || c.Lanes > MaxLanes {
		return fmt.Errorf("postgres: outbox lanes must be 1..%d, got %d", MaxLanes, c.Lanes)
	}
	return nil
}

// ProductRepository implements product.Repository. Every write runs in one transaction that
// stores the row and appends the product's events to the outbox through watermill-sql's
// publisher, wrapped by Watermill's forwarder publisher, on that same *sql.Tx.
type ProductRepository struct {
	db  *DB
	cfg ProductRepositoryConfig
	log *slog.Logger
}

// NewProductRepository returns a repository over db.
func NewProductRepository(db *DB, cfg ProductRepositoryConfig, log *slog.Logger) (*ProductRepository, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &ProductRepository{db: db, cfg: cfg, log: log}, nil
}

const productColumns = `id, sku, name, description, category, brand, price_amount, price_currency, stock, attributes, tags, version, created_at, updated_at, deleted_at`

// Add implements product.Repository.
func (r *ProductRepository) Add(ctx context.Context, p *product.Product, key *product.IdempotencyKey) (*product.Product, bool, error) {
	var existing product.ID
	err := r.inTx(ctx, func(tx *sql.Tx) error {
		if key != nil {
			var inserted bool
			err := tx.QueryRowContext(ctx, `INSERT INTO idempotency_keys (key, fingerprint, product_id) VALUES ($1, $2, $3)
ON CONFLICT (key) DO NOTHING RETURNING true`, key.Key, key.Fingerprint, p.ID().String()).Scan(&inserted)
			if errors.Is(err, sql.ErrNoRows) {
				// The key exists (or a concurrent request just committed it): replay or refuse.
				var fp, id string
				if err := tx.QueryRowContext(ctx, `SELECT fingerprint, product_id FROM idempotency_keys WHERE key = $1`, key.Key).Scan(&fp, &id); err != nil {
					return fmt.Errorf("read idempotency key: %w", err)
				}
				if fp != key.Fingerprint {
					return product.ErrIdempotencyKeyReused
				}
				existing = product.ID(id)
				return nil
			} else if err != nil {
				return fmt.Errorf("insert idempotency key: %w", err)
			}
		}
		d := p.Details()
		attrs, tags, err := marshalDocuments(d)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO products (`+productColumns+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)`,
			p.ID().String(), d.SKU, d.Name, d.Description, d.Category, d.Brand, d.Price.Amount(), d.Price.Currency(),
			d.Stock, attrs, tags, p.Version(), p.CreatedAt(), p.UpdatedAt(), p.DeletedAt())
		if err != nil {
			return mapWriteError(err)
		}
		return r.publish(ctx, tx, p)
	})
	if err != nil {
		return nil, false, fmt.Errorf("add product %s: %w", p.ID(), err)
	}
	if existing != "" {
		stored, err := r.Get(ctx, existing)
		if err != nil {
			return nil, false, fmt.Errorf("add product: replay of idempotency key: %w", err)
		}
		return stored, true, nil
	}
	return p, false, nil
}

// Get implements product.Repository.
func (r *ProductRepository) Get(ctx context.Context, id product.ID) (*product.Product, error) {
	row := r.db.Pool.QueryRow(ctx, `SELECT `+productColumns+` FROM products WHERE id = $1`, id.String())
	p, err := scanProduct(row)
	if err != nil {
		return nil, fmt.Errorf("get product %s: %w", id, err)
	}
	return p, nil
}

// Update implements product.Repository. The row is locked for the whole read-modify-write, so
// of several concurrent updates expecting one version exactly one succeeds; the UPDATE also
// names the version it read, as a second guard.
func (r *ProductRepository) Update(ctx context.Context, id product.ID, updateFn func(context.Context, *product.Product) (*product.Product, error)) (*product.Product, error) {
	var out *product.Product
	err := r.inTx(ctx, func(tx *sql.Tx) error {
		p, err := scanProduct(tx.QueryRowContext(ctx, `SELECT `+productColumns+` FROM products WHERE id = $1 FOR UPDATE`, id.String()))
		if err != nil {
			return err
		}
		readVersion := p.Version()
		updated, err := updateFn(ctx, p)
		if err != nil {
			return err
		}
		if updated.Version() == readVersion {
			out = updated // nothing changed: no write, no event
			return nil
		}
		d := updated.Details()
		attrs, tags, err := marshalDocuments(d)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE products SET sku=$2, name=$3, description=$4, category=$5, brand=$6,
price_amount=$7, price_currency=$8, stock=$9, attributes=$10, tags=$11, version=$12, updated_at=$13, deleted_at=$14
WHERE id=$1 AND version=$15`,
			id.String(), d.SKU, d.Name, d.Description, d.Category, d.Brand, d.Price.Amount(), d.Price.Currency(),
			d.Stock, attrs, tags, updated.Version(), updated.UpdatedAt(), updated.DeletedAt(), readVersion)
		if err != nil {
			return mapWriteError(err)
		}
		// With pipelined transactions the UPDATE is sent here: its error, a duplicate SKU say,
		// arrives with its row count.
		n, err := res.RowsAffected()
		if err != nil {
			return mapWriteError(err)
		}
		if n != 1 {
			return &product.VersionConflictError{Expected: readVersion, Actual: -1}
		}
		out = updated
		return r.publish(ctx, tx, updated)
	})
	if err != nil {
		return nil, fmt.Errorf("update product %s: %w", id, err)
	}
	return out, nil
}

// publish appends the product's pending events to the outbox on tx.
func (r *ProductRepository) publish(ctx context.Context, tx *sql.Tx, p *product.Product) error {
	events := p.PopEvents()
	if len(events) == 0 {
		return nil
	}
	msgs := make([]*message.Message, 0, len(events))
	for _, e := range events {
		m, err := envelope.Marshal(e)
		if err != nil {
			return err
		}
		if r.cfg.Decorate != nil {
			r.cfg.Decorate(ctx, m)
		}
		msgs = append(msgs, m)
	}
	pub, err := wsql.NewPublisher(tx, wsql.PublisherConfig{SchemaAdapter: OutboxSchema{}}, nil)
	if err != nil {
		return fmt.Errorf("outbox publisher: %w", err)
	}
	fwd := forwarder.NewPublisher(pub, forwarder.PublisherConfig{
		ForwarderTopic: LaneTopic(LaneOf(p.ID().String(), r.cfg.Lanes)),
	})
	if err := fwd.Publish(r.cfg.Topic, msgs...); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

func (r *ProductRepository) inTx(ctx context.Context, fn func(*sql.Tx) error) (err error) {
	tx, err := r.db.Writes.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", mapWriteError(err))
	}
	return nil
}

// marshalDocuments encodes the jsonb columns of d.
func marshalDocuments(d product.Details) (attrs, tags []byte, err error) {
	if attrs, err = json.Marshal(d.Attributes); err != nil {
		return nil, nil, fmt.Errorf("marshal attributes: %w", err)
	}
	if tags, err = json.Marshal(d.Tags); err != nil {
		return nil, nil, fmt.Errorf("marshal tags: %w", err)
	}
	return attrs, tags, nil
}

type scanner interface{ Scan(dest ...any) error }

// scanProduct reads a row of productColumns. The row is history: it is not checked against
// today's rules (a name written under a longer limit stays readable, and a rebuild does not
// stop at it); only what makes it unreadable, undecodable jsonb or a broken id or version,
// fails.
func scanProduct(row scanner) (*product.Product, error) {
	var (
		id, sku, name, desc, cat, brand, cur string
		amount, stock, version               int64
		attrsRaw, tagsRaw                    []byte
		created, updated                     time.Time
		deleted                              *time.Time
	)
	err := row.Scan(&id, &sku, &name, &desc, &cat, &brand, &amount, &cur, &stock, &attrsRaw, &tagsRaw, &version, &created, &updated, &deleted)
	if errors.Is(err, sql.ErrNoRows) || errors.Is(err, pgx.ErrNoRows) {
		return nil, product.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("scan product: %w", err)
	}
	attrs := map[string]string{}
	if err := json.Unmarshal(attrsRaw, &attrs); err != nil {
		return nil, fmt.Errorf("product %s attributes: %w", id, err)
	}
	var tags []string
	if err := json.Unmarshal(tagsRaw, &tags); err != nil {
		return nil, fmt.Errorf("product %s tags: %w", id, err)
	}
	d := product.UnmarshalDetailsFromHistory(sku, name, desc, cat, brand, amount, cur, stock, attrs, tags)
	p, err := product.UnmarshalProductFromDatabase(product.ID(id), d, version, created, updated, deleted)
	if err != nil {
		return nil, fmt.Errorf("stored product %s is corrupt: %w", id, err)
	}
	return p, nil
}

// mapWriteError turns constraint violations into domain errors; everything else is an
// infrastructure failure and stays as it is.
func mapWriteError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505" && pgErr.ConstraintName == "products_sku_live":
			return product.ErrDuplicateSKU
		case pgErr.Code == "40001" || pgErr.Code == "40P01":
			return &product.VersionConflictError{Expected: -1, Actual: -1}
		}
	}
	return err
}

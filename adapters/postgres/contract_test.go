package postgres_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/marketplace/catalog/adapters/postgres"
	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/domain/product"
	"github.com/marketplace/catalog/internal/repotest"
	"github.com/marketplace/catalog/internal/testenv"
)

// forwarderEnvelope is the JSON that Watermill's forwarder publisher writes as the payload of an
// outbox row (github.com/ThreeDotsLabs/watermill/components/forwarder, envelope.go): the
// destination topic and the original message, whose payload is our event envelope.
type forwarderEnvelope struct {
	DestinationTopic string            `json:"destination_topic"`
	UUID             string            `json:"uuid"`
	Payload          []byte            `json:"payload"`
	Metadata         map[string]string `json:"metadata"`
}

// TestProductRepositoryContract runs the product.Repository contract against PostgreSQL: every
// case on a fresh, migrated database, reading the events back from the outbox table.
func TestProductRepositoryContract(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL; skipped in -short mode")
	}
	repotest.RunProductRepositoryContract(t, func(t *testing.T) repotest.Fixture {
		const topic = "product.events"
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		t.Cleanup(cancel)
		url := testenv.NewDatabase(t)
		db, err := postgres.Open(ctx, postgres.Config{URL: url, MaxConns: 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		if _, err := postgres.Migrate(ctx, db, log); err != nil {
			t.Fatal(err)
		}
		repo, err := postgres.NewProductRepository(db, postgres.ProductRepositoryConfig{}, log)
		if err != nil {
			t.Fatal(err)
		}
		return repotest.Fixture{Repo: repo, Events: func(t *testing.T) []product.Event {
			t.Helper()
			return outboxEvents(t, db, topic)
		}}
	})
}

// outboxEvents decodes every outbox row, in the relay's order, into domain events.
func outboxEvents(t *testing.T, db *postgres.DB, topic string) []product.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := db.Pool.Query(ctx, `SELECT uuid, payload FROM outbox_messages ORDER BY transaction_id, "offset"`)
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	defer rows.Close()
	var events []product.Event
	for rows.Next() {
		var (
			rowUUID string
			payload []byte
		)
		if err := rows.Scan(&rowUUID, &payload); err != nil {
			t.Fatalf("scan outbox row: %v", err)
		}
		var env forwarderEnvelope
		if err := json.Unmarshal(payload, &env); err != nil {
			t.Fatalf("outbox row %s: not a forwarder envelope: %v", rowUUID, err)
		}
		if env.DestinationTopic != topic {
			t.Fatalf("outbox row %s: destination topic %q, want %q", rowUUID, env.DestinationTopic, topic)
		}
		e, err := envelope.Unmarshal(env.Payload)
		if err != nil {
			t.Fatalf("outbox row %s: %v", rowUUID, err)
		}
		if env.UUID != e.ID.String() || env.Metadata[envelope.MetaEventType] != string(e.Type) ||
			env.Metadata[envelope.MetaAggregateID] != e.AggregateID.String() {
			t.Fatalf("outbox row %s: message uuid %s / metadata %v disagree with the event %s %s", rowUUID, env.UUID, env.Metadata, e.ID, e.Type)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	return events
}

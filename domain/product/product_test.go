package product_test

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketplace/catalog/domain/product"
)

var t0 = time.Date(2025, 3, 14, 9, 26, 53, 589793238, time.UTC)

func mustDetails(t testing.TB, mutate ...func(*input)) product.Details {
	t.Helper()
	in := validInput()
	for _, m := range mutate {
		m(&in)
	}
	d, err := in.details()
	if err != nil {
		t.Fatalf("NewDetails: %v", err)
	}
	return d
}

func mustMoney(t testing.TB, amount int64, currency string) product.Money {
	t.Helper()
	m, err := product.NewMoney(amount, currency)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newProduct(t testing.TB) *product.Product {
	t.Helper()
	p, err := product.New(product.NewID(t0), mustDetails(t), t0)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func detailsEqual(a, b product.Details) bool {
	return a.SKU == b.SKU && a.Name == b.Name && a.Description == b.Description && a.Category == b.Category &&
		a.Brand == b.Brand && a.Price == b.Price && a.Stock == b.Stock && maps.Equal(a.Attributes, b.Attributes) &&
		slices.Equal(a.Tags, b.Tags)
}

func snapshotEqual(a, b product.Snapshot) bool {
	if (a.DeletedAt == nil) != (b.DeletedAt == nil) || (a.DeletedAt != nil && !a.DeletedAt.Equal(*b.DeletedAt)) {
		return false
	}
	return a.ID == b.ID && detailsEqual(a.Details, b.Details) && a.Version == b.Version &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

func micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func TestNew(t *testing.T) {
	t.Parallel()
	id := product.NewID(t0)
	d := mustDetails(t)
	p, err := product.New(id, d, t0)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID() != id || p.Version() != 1 || p.IsDeleted() || p.DeletedAt() != nil {
		t.Fatalf("New: id %s version %d deleted %v", p.ID(), p.Version(), p.IsDeleted())
	}
	if !detailsEqual(p.Details(), d) {
		t.Fatalf("details %+v, want %+v", p.Details(), d)
	}
	if want := micro(t0); !p.CreatedAt().Equal(want) || !p.UpdatedAt().Equal(want) {
		t.Fatalf("created %v updated %v, want %v", p.CreatedAt(), p.UpdatedAt(), want)
	}
	events := p.PopEvents()
	if len(events) != 1 {
		t.Fatalf("New recorded %d events, want 1", len(events))
	}
	e := events[0]
	if e.Type != product.EventCreated || e.AggregateID != id || e.AggregateVersion != 1 || !e.OccurredAt.Equal(micro(t0)) {
		t.Fatalf("created event %+v", e)
	}
	if _, err := product.ParseID(e.ID.String()); err != nil || e.ID == id {
		t.Fatalf("event id %q: %v", e.ID, err)
	}
	if !snapshotEqual(e.State, p.Snapshot()) || e.State.Version != 1 || e.State.Deleted() {
		t.Fatalf("event state %+v, want the full snapshot %+v", e.State, p.Snapshot())
	}
	if got := p.PopEvents(); len(got) != 0 {
		t.Fatalf("second PopEvents returned %d events", len(got))
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	if _, err := product.New("not-a-uuid", mustDetails(t), t0); !errors.Is(err, product.ErrInvalidID) {
		t.Errorf("invalid id: err %v, want ErrInvalidID", err)
	}
	if _, err := product.New("", mustDetails(t), t0); !errors.Is(err, product.ErrInvalidID) {
		t.Errorf("empty id: err %v, want ErrInvalidID", err)
	}
	// Details built by hand bypass NewDetails; New validates them again.
	for name, d := range map[string]product.Details{
		"zero details":      {},
		"no currency":       {SKU: "A", Name: "B"},
		"negative stock":    func() product.Details { d := mustDetails(t); d.Stock = -1; return d }(),
		"bad sku":           func() product.Details { d := mustDetails(t); d.SKU = "-x"; return d }(),
		"too many attrs":    func() product.Details { d := mustDetails(t); d.Attributes = attrs(51); return d }(),
		"NUL in attr value": func() product.Details { d := mustDetails(t); d.Attributes = map[string]string{"a": "\x00"}; return d }(),
	} {
		if _, err := product.New(product.NewID(t0), d, t0); !errors.Is(err, product.ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", name, err)
		}
	}
}

func TestNewCanonicalisesID(t *testing.T) {
	t.Parallel()
	id := product.NewID(t0)
	p, err := product.New(product.ID(strings.ToUpper(id.String())), mustDetails(t), t0)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID() != id {
		t.Fatalf("id %q, want canonical %q", p.ID(), id)
	}
	if e := p.PopEvents()[0]; e.AggregateID != id || e.State.ID != id {
		t.Fatalf("event carries id %q / %q, want %q", e.AggregateID, e.State.ID, id)
	}
}

func TestNewNormalisesHandBuiltDetails(t *testing.T) {
	t.Parallel()
	d := mustDetails(t)
	d.SKU, d.Name = "  SKU-1 ", " Name\t"
	p, err := product.New(product.NewID(t0), d, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Details(); got.SKU != "SKU-1" || got.Name != "Name" {
		t.Fatalf("stored sku %q name %q, want them trimmed as NewDetails does", got.SKU, got.Name)
	}
}

func TestUpdateEventTypes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*input)
		want   product.EventType
	}{
		{"price amount only", func(in *input) { in.amount++ }, product.EventPriceChanged},
		{"price currency only", func(in *input) { in.currency = "USD" }, product.EventPriceChanged},
		{"stock only", func(in *input) { in.stock = 0 }, product.EventStockChanged},
		{"price and stock", func(in *input) { in.amount++; in.stock++ }, product.EventUpdated},
		{"name", func(in *input) { in.name = "Other" }, product.EventUpdated},
		{"sku", func(in *input) { in.sku = "SKU-2" }, product.EventUpdated},
		{"description", func(in *input) { in.description = "" }, product.EventUpdated},
		{"category", func(in *input) { in.category = "garden" }, product.EventUpdated},
		{"brand", func(in *input) { in.brand = "Other" }, product.EventUpdated},
		{"attribute value", func(in *input) { in.attributes = map[string]string{"color": "blue", "voltage": "230V"} }, product.EventUpdated},
		{"attribute removed", func(in *input) { in.attributes = map[string]string{"color": "red"} }, product.EventUpdated},
		{"attribute added", func(in *input) {
			in.attributes = map[string]string{"color": "red", "voltage": "230V", "size": "L"}
		}, product.EventUpdated},
		{"attributes cleared", func(in *input) { in.attributes = nil }, product.EventUpdated},
		{"price and name", func(in *input) { in.amount++; in.name = "Other" }, product.EventUpdated},
		{"stock and attributes", func(in *input) { in.stock++; in.attributes = nil }, product.EventUpdated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newProduct(t)
			p.PopEvents()
			d := mustDetails(t, tt.change)
			now := t0.Add(time.Minute)
			if err := p.Update(d, now); err != nil {
				t.Fatal(err)
			}
			if p.Version() != 2 {
				t.Fatalf("version %d, want 2", p.Version())
			}
			if !detailsEqual(p.Details(), d) {
				t.Fatalf("details %+v, want %+v", p.Details(), d)
			}
			if !p.UpdatedAt().Equal(micro(now)) || !p.CreatedAt().Equal(micro(t0)) {
				t.Fatalf("created %v updated %v", p.CreatedAt(), p.UpdatedAt())
			}
			events := p.PopEvents()
			if len(events) != 1 {
				t.Fatalf("%d events, want 1", len(events))
			}
			e := events[0]
			if e.Type != tt.want || e.AggregateVersion != 2 || e.AggregateID != p.ID() || !e.OccurredAt.Equal(micro(now)) {
				t.Fatalf("event %s v%d, want %s v2", e.Type, e.AggregateVersion, tt.want)
			}
			if !snapshotEqual(e.State, p.Snapshot()) {
				t.Fatalf("event state %+v, want %+v", e.State, p.Snapshot())
			}
		})
	}
}

func TestUpdateNoOp(t *testing.T) {
	t.Parallel()
	for name, d := range map[string]product.Details{
		"same details":               mustDetails(t),
		"same details, other spaces": mustDetails(t, func(in *input) { in.sku = " " + in.sku + " " }),
		"hand-built, untrimmed sku":  func() product.Details { d := mustDetails(t); d.SKU = " " + d.SKU + "\t"; return d }(),
	} {
		p := newProduct(t)
		p.PopEvents()
		before := p.Snapshot()
		if err := p.Update(d, t0.Add(time.Hour)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if ev := p.PopEvents(); len(ev) != 0 {
			t.Errorf("%s: no-op update recorded %d events", name, len(ev))
		}
		if !snapshotEqual(p.Snapshot(), before) {
			t.Errorf("%s: no-op update changed state: %+v -> %+v", name, before, p.Snapshot())
		}
	}

	// nil and empty attributes are the same state.
	p, err := product.New(product.NewID(t0), mustDetails(t, func(in *input) { in.attributes = nil }), t0)
	if err != nil {
		t.Fatal(err)
	}
	p.PopEvents()
	if err := p.Update(mustDetails(t, func(in *input) { in.attributes = map[string]string{} }), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if p.Version() != 1 || len(p.PopEvents()) != 0 {
		t.Fatalf("nil -> empty attributes is a change: version %d", p.Version())
	}
	// Same price and stock through the single-field methods are no-ops too.
	if err := p.ChangePrice(p.Details().Price, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := p.ChangeStock(p.Details().Stock, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if p.Version() != 1 || len(p.PopEvents()) != 0 {
		t.Fatalf("unchanged price/stock bumped the version to %d", p.Version())
	}
}

func TestUpdateInvalidLeavesProductUnchanged(t *testing.T) {
	t.Parallel()
	p := newProduct(t)
	p.PopEvents()
	before := p.Snapshot()
	bad := mustDetails(t)
	bad.Stock = -3
	bad.Name = ""
	err := p.Update(bad, t0.Add(time.Minute))
	if !errors.Is(err, product.ErrInvalid) {
		t.Fatalf("err %v, want ErrInvalid", err)
	}
	if got := fieldNames(t, err); len(got) != 2 {
		t.Fatalf("fields %q, want name and stock", got)
	}
	if err := p.ChangeStock(-1, t0); !errors.Is(err, product.ErrInvalid) {
		t.Fatalf("ChangeStock(-1): %v", err)
	}
	if err := p.ChangeStock(product.MaxStock+1, t0); !errors.Is(err, product.ErrInvalid) {
		t.Fatalf("ChangeStock(too large): %v", err)
	}
	if err := p.ChangePrice(product.Money{}, t0); !errors.Is(err, product.ErrInvalid) {
		t.Fatalf("ChangePrice(zero money): %v", err)
	}
	if !snapshotEqual(p.Snapshot(), before) || len(p.PopEvents()) != 0 {
		t.Fatalf("a rejected change changed the product: %+v", p.Snapshot())
	}
}

func TestChangePriceAndStock(t *testing.T) {
	t.Parallel()
	p := newProduct(t)
	p.PopEvents()
	if err := p.ChangePrice(mustMoney(t, 2500, "USD"), t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := p.ChangeStock(42, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	d := p.Details()
	if d.Price.Amount() != 2500 || d.Price.Currency() != "USD" || d.Stock != 42 || d.Name != validInput().name {
		t.Fatalf("details %+v", d)
	}
	events := p.PopEvents()
	if len(events) != 2 || events[0].Type != product.EventPriceChanged || events[1].Type != product.EventStockChanged ||
		events[0].AggregateVersion != 2 || events[1].AggregateVersion != 3 {
		t.Fatalf("events %+v", events)
	}
	if events[0].State.Details.Stock != 5 || events[1].State.Details.Price.Amount() != 2500 {
		t.Fatal("each event must carry the full state at its version")
	}
}

// A product whose stored name breaks today's limit (written under an older, looser rule) can
// still change its price and stock: those commands check what they change, not history.
func TestChangePriceAndStockOfALegacyProduct(t *testing.T) {
	t.Parallel()
	legacy := product.UnmarshalDetailsFromHistory("OLD-1", strings.Repeat("n", 300), "", "", "", 100, "EUR", 1, nil, nil)
	p, err := product.UnmarshalProductFromDatabase(product.NewID(t0), legacy, 3, t0, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ChangePrice(mustMoney(t, 200, "EUR"), t0.Add(time.Second)); err != nil {
		t.Fatalf("price change of a legacy product: %v", err)
	}
	if err := p.ChangeStock(7, t0.Add(2*time.Second)); err != nil {
		t.Fatalf("stock change of a legacy product: %v", err)
	}
	if err := p.ChangeStock(-1, t0.Add(3*time.Second)); !errors.Is(err, product.ErrInvalid) {
		t.Fatalf("negative stock: %v, want ErrInvalid", err)
	}
	if err := p.ChangePrice(product.Money{}, t0.Add(3*time.Second)); !errors.Is(err, product.ErrInvalid) {
		t.Fatalf("zero money: %v, want ErrInvalid", err)
	}
	if ev := p.PopEvents(); len(ev) != 2 || ev[1].State.Details.Name != legacy.Name || p.Version() != 5 {
		t.Fatalf("events %+v version %d", ev, p.Version())
	}
	// A full update is a command stating every field: the name must meet today's rule.
	if err := p.Update(legacy, t0.Add(4*time.Second)); !errors.Is(err, product.ErrInvalid) {
		t.Fatalf("update restating the legacy name: %v, want ErrInvalid", err)
	}
}

func TestUpdateOfTagsIsAnUpdate(t *testing.T) {
	t.Parallel()
	p := newProduct(t)
	p.PopEvents()
	d := p.Details()
	d.Tags = []string{"sale", "eco"}
	if err := p.Update(d, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	d.Tags = []string{"eco", "sale"} // the order is the client's, so a new order is a change
	if err := p.Update(d, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := p.Update(d, t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	ev := p.PopEvents()
	if len(ev) != 2 || ev[0].Type != product.EventUpdated || !slices.Equal(ev[1].State.Details.Tags, []string{"eco", "sale"}) {
		t.Fatalf("events %+v", ev)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	p := newProduct(t)
	p.PopEvents()
	now := t0.Add(time.Hour)
	if err := p.Delete(now); err != nil {
		t.Fatal(err)
	}
	if !p.IsDeleted() || p.DeletedAt() == nil || !p.DeletedAt().Equal(micro(now)) {
		t.Fatalf("deleted %v at %v", p.IsDeleted(), p.DeletedAt())
	}
	if p.Version() != 2 || !p.UpdatedAt().Equal(micro(now)) {
		t.Fatalf("version %d updated %v", p.Version(), p.UpdatedAt())
	}
	if !detailsEqual(p.Details(), mustDetails(t)) {
		t.Fatal("a tombstone keeps its last details")
	}
	events := p.PopEvents()
	if len(events) != 1 || events[0].Type != product.EventDeleted || events[0].AggregateVersion != 2 {
		t.Fatalf("events %+v", events)
	}
	if s := events[0].State; !s.Deleted() || !s.DeletedAt.Equal(micro(now)) || s.Version != 2 {
		t.Fatalf("deleted event state %+v", s)
	}

	before := p.Snapshot()
	if err := p.Delete(now.Add(time.Hour)); !errors.Is(err, product.ErrDeleted) {
		t.Fatalf("second Delete: %v, want ErrDeleted", err)
	}
	if err := p.Update(mustDetails(t, func(in *input) { in.name = "x" }), now.Add(time.Hour)); !errors.Is(err, product.ErrDeleted) {
		t.Fatalf("Update after Delete: %v, want ErrDeleted", err)
	}
	if err := p.Update(mustDetails(t), now.Add(time.Hour)); !errors.Is(err, product.ErrDeleted) {
		t.Fatalf("no-op Update after Delete: %v, want ErrDeleted", err)
	}
	if err := p.ChangePrice(mustMoney(t, 1, "EUR"), now); !errors.Is(err, product.ErrDeleted) {
		t.Fatalf("ChangePrice after Delete: %v", err)
	}
	if err := p.ChangeStock(1, now); !errors.Is(err, product.ErrDeleted) {
		t.Fatalf("ChangeStock after Delete: %v", err)
	}
	if !snapshotEqual(p.Snapshot(), before) || len(p.PopEvents()) != 0 {
		t.Fatal("operations on a tombstone changed it")
	}
}

func TestCheckVersion(t *testing.T) {
	t.Parallel()
	p := newProduct(t)
	if err := p.CheckVersion(1); err != nil {
		t.Fatalf("CheckVersion(1): %v", err)
	}
	for _, expected := range []int64{0, 2, -1, 100} {
		err := p.CheckVersion(expected)
		var vc *product.VersionConflictError
		if !errors.As(err, &vc) {
			t.Fatalf("CheckVersion(%d) = %v (%T), want *VersionConflictError", expected, err, err)
		}
		if vc.Expected != expected || vc.Actual != 1 {
			t.Errorf("conflict %+v, want expected %d actual 1", vc, expected)
		}
		if !errors.Is(err, product.ErrVersionConflict) || errors.Is(err, product.ErrInvalid) {
			t.Errorf("CheckVersion(%d): errors.Is mismatch for %v", expected, err)
		}
		if !strings.Contains(err.Error(), "version conflict") {
			t.Errorf("message %q", err.Error())
		}
	}
	if err := p.ChangeStock(9, t0); err != nil {
		t.Fatal(err)
	}
	if err := p.CheckVersion(1); !errors.Is(err, product.ErrVersionConflict) {
		t.Fatalf("stale version accepted: %v", err)
	}
	if err := p.CheckVersion(2); err != nil {
		t.Fatal(err)
	}
	// The conflict survives wrapping by adapters.
	var vc *product.VersionConflictError
	if err := p.CheckVersion(1); !errors.As(errors.Join(errors.New("update"), err), &vc) || vc.Actual != 2 {
		t.Fatal("wrapped conflict lost its versions")
	}
}

func TestOneEventPerVersion(t *testing.T) {
	t.Parallel()
	p := newProduct(t)
	now := t0
	tick := func() time.Time { now = now.Add(time.Millisecond); return now }
	var all []product.Event
	all = append(all, p.PopEvents()...)
	steps := []func() error{
		func() error { return p.ChangePrice(mustMoney(t, 1, "EUR"), tick()) },
		func() error { return p.ChangeStock(7, tick()) },
		func() error { return p.Update(mustDetails(t, func(in *input) { in.name = "n2" }), tick()) },
		func() error { return p.Update(p.Details(), tick()) }, // no-op
		func() error { return p.ChangeStock(8, tick()) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if i%2 == 0 {
			all = append(all, p.PopEvents()...) // popping in between must not lose or repeat events
		}
	}
	if err := p.Delete(tick()); err != nil {
		t.Fatal(err)
	}
	all = append(all, p.PopEvents()...)
	if int64(len(all)) != p.Version() {
		t.Fatalf("%d events for version %d", len(all), p.Version())
	}
	seen := map[product.ID]bool{}
	for i, e := range all {
		if e.AggregateVersion != int64(i+1) || e.State.Version != e.AggregateVersion {
			t.Fatalf("event %d has version %d (state %d)", i, e.AggregateVersion, e.State.Version)
		}
		if seen[e.ID] {
			t.Fatalf("duplicate event id %s", e.ID)
		}
		seen[e.ID] = true
		if !e.OccurredAt.Equal(e.State.UpdatedAt) {
			t.Fatalf("event %d occurred %v but state updated %v", i, e.OccurredAt, e.State.UpdatedAt)
		}
		if i > 0 && e.OccurredAt.Before(all[i-1].OccurredAt) {
			t.Fatalf("event %d occurred before event %d", i, i-1)
		}
		if (e.Type == product.EventDeleted) != e.State.Deleted() {
			t.Fatalf("event %d: type %s with deleted=%v", i, e.Type, e.State.Deleted())
		}
	}
	wantTypes := []product.EventType{product.EventCreated, product.EventPriceChanged, product.EventStockChanged,
		product.EventUpdated, product.EventStockChanged, product.EventDeleted}
	for i, e := range all {
		if e.Type != wantTypes[i] {
			t.Fatalf("event %d type %s, want %s", i, e.Type, wantTypes[i])
		}
	}
}

func TestUnmarshalProductFromDatabase(t *testing.T) {
	t.Parallel()
	id := product.NewID(t0)
	d := mustDetails(t)
	cet := time.FixedZone("CET", 3600)
	created, updated := t0.In(cet), t0.Add(time.Hour).In(cet)
	deleted := t0.Add(2 * time.Hour).In(cet)

	p, err := product.UnmarshalProductFromDatabase(id, d, 7, created, updated, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ev := p.PopEvents(); len(ev) != 0 {
		t.Fatalf("rehydration recorded %d events", len(ev))
	}
	if p.ID() != id || p.Version() != 7 || p.IsDeleted() || !detailsEqual(p.Details(), d) {
		t.Fatalf("rehydrated %+v", p.Snapshot())
	}
	if p.CreatedAt().Location() != time.UTC || p.UpdatedAt().Location() != time.UTC ||
		!p.CreatedAt().Equal(created) || !p.UpdatedAt().Equal(updated) {
		t.Fatalf("times %v %v, want UTC instants of %v %v", p.CreatedAt(), p.UpdatedAt(), created, updated)
	}
	// The next change continues from the stored version.
	if err := p.ChangeStock(1, t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if ev := p.PopEvents(); len(ev) != 1 || ev[0].AggregateVersion != 8 || p.Version() != 8 {
		t.Fatalf("after rehydration: version %d events %+v", p.Version(), ev)
	}

	tomb, err := product.UnmarshalProductFromDatabase(id, d, 9, created, deleted, &deleted)
	if err != nil {
		t.Fatal(err)
	}
	deleted = deleted.Add(time.Hour) // the caller's variable must not alias the aggregate
	if !tomb.IsDeleted() || !tomb.DeletedAt().Equal(t0.Add(2*time.Hour)) || tomb.DeletedAt().Location() != time.UTC {
		t.Fatalf("tombstone deleted at %v", tomb.DeletedAt())
	}
	if err := tomb.ChangeStock(1, t0); !errors.Is(err, product.ErrDeleted) || len(tomb.PopEvents()) != 0 {
		t.Fatalf("change of a rehydrated tombstone: %v", err)
	}

	if _, err := product.UnmarshalProductFromDatabase(id, d, 0, created, updated, nil); !errors.Is(err, product.ErrInvalid) {
		t.Errorf("version 0: %v, want ErrInvalid", err)
	}
	if _, err := product.UnmarshalProductFromDatabase("x", d, 1, created, updated, nil); !errors.Is(err, product.ErrInvalidID) {
		t.Errorf("bad id: %v, want ErrInvalidID", err)
	}
	upper, err := product.UnmarshalProductFromDatabase(product.ID(strings.ToUpper(id.String())), d, 1, created, updated, nil)
	if err != nil || upper.ID() != id {
		t.Errorf("upper-case id: %v, %v; want canonical %s", upper, err, id)
	}
}

func TestTimestampsAreUTCMicroseconds(t *testing.T) {
	t.Parallel()
	loc := time.FixedZone("UTC-7", -7*3600)
	local := time.Date(2025, 6, 1, 10, 0, 0, 123456789, loc)
	p, err := product.New(product.NewID(local), mustDetails(t), local)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, got time.Time, want time.Time) {
		t.Helper()
		if got.Location() != time.UTC || got.Nanosecond()%1000 != 0 || !got.Equal(want) {
			t.Errorf("%s = %v, want %v in UTC at microsecond precision", what, got, want)
		}
	}
	want := time.Date(2025, 6, 1, 17, 0, 0, 123456000, time.UTC)
	check("created_at", p.CreatedAt(), want)
	check("updated_at", p.UpdatedAt(), want)
	check("occurred_at", p.PopEvents()[0].OccurredAt, want)

	later := local.Add(time.Second + 210) // 123456999 ns: the 999 ns are dropped
	if err := p.ChangeStock(1, later); err != nil {
		t.Fatal(err)
	}
	check("updated_at after update", p.UpdatedAt(), want.Add(time.Second))
	e := p.PopEvents()[0]
	check("occurred_at of update", e.OccurredAt, want.Add(time.Second))
	check("state updated_at", e.State.UpdatedAt, want.Add(time.Second))

	// A monotonic clock reading must not leak into equality.
	now := time.Now()
	q, err := product.New(product.NewID(now), mustDetails(t), now)
	if err != nil {
		t.Fatal(err)
	}
	if q.CreatedAt() != micro(now) {
		t.Errorf("created_at %#v is not the plain UTC microsecond instant %#v", q.CreatedAt(), micro(now))
	}
	if err := q.Delete(now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	check("deleted_at", *q.DeletedAt(), micro(now.Add(time.Second)))
}

func TestClockStepBack(t *testing.T) {
	t.Parallel()
	p := newProduct(t)
	p.PopEvents()
	if err := p.ChangeStock(1, t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !p.UpdatedAt().Equal(micro(t0)) {
		t.Fatalf("updated_at ran backwards: %v < %v", p.UpdatedAt(), micro(t0))
	}
	e := p.PopEvents()[0]
	if !e.OccurredAt.Equal(micro(t0)) || !e.State.UpdatedAt.Equal(micro(t0)) {
		t.Fatalf("event time %v / state %v, want %v", e.OccurredAt, e.State.UpdatedAt, micro(t0))
	}
	if err := p.ChangeStock(2, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := p.ChangeStock(3, t0.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if !p.UpdatedAt().Equal(micro(t0.Add(time.Minute))) {
		t.Fatalf("updated_at %v", p.UpdatedAt())
	}
	// A delete under a stepped-back clock: deleted_at and updated_at are the same instant, never
	// before the last change.
	if err := p.Delete(t0.Add(-24 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !p.UpdatedAt().Equal(micro(t0.Add(time.Minute))) {
		t.Fatalf("updated_at after delete %v", p.UpdatedAt())
	}
	if p.DeletedAt().Before(p.UpdatedAt()) || p.DeletedAt().Before(p.CreatedAt()) {
		t.Fatalf("deleted_at %v is before updated_at %v / created_at %v", p.DeletedAt(), p.UpdatedAt(), p.CreatedAt())
	}
	events := p.PopEvents()
	if d := events[len(events)-1]; !d.State.DeletedAt.Equal(d.State.UpdatedAt) || !d.OccurredAt.Equal(d.State.UpdatedAt) {
		t.Fatalf("deleted event: deleted_at %v updated_at %v occurred %v", d.State.DeletedAt, d.State.UpdatedAt, d.OccurredAt)
	}
}

func TestReturnedStateIsACopy(t *testing.T) {
	t.Parallel()
	p := newProduct(t)
	events := p.PopEvents()

	d := p.Details()
	d.Attributes["color"] = "green"
	d.Attributes["injected"] = "x"
	d.Name = "changed"
	s := p.Snapshot()
	s.Details.Attributes["color"] = "green"
	events[0].State.Details.Attributes["color"] = "green"

	if got := p.Details(); got.Attributes["color"] != "red" || len(got.Attributes) != 2 || got.Name != validInput().name {
		t.Fatalf("aggregate changed through a returned copy: %+v", got)
	}

	// Details handed to New and Update are copied too.
	in := mustDetails(t)
	q, err := product.New(product.NewID(t0), in, t0)
	if err != nil {
		t.Fatal(err)
	}
	in.Attributes["color"] = "green"
	if q.Details().Attributes["color"] != "red" {
		t.Fatal("New aliases the caller's attributes")
	}
	upd := mustDetails(t, func(in *input) { in.name = "new" })
	if err := q.Update(upd, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	upd.Attributes["color"] = "green"
	if q.Details().Attributes["color"] != "red" {
		t.Fatal("Update aliases the caller's attributes")
	}
	for _, e := range q.PopEvents() {
		if e.State.Details.Attributes["color"] != "red" {
			t.Fatal("an event aliases the caller's attributes")
		}
	}

	// Details of a product created without attributes are an empty, writable map.
	r, err := product.New(product.NewID(t0), mustDetails(t, func(in *input) { in.attributes = nil }), t0)
	if err != nil {
		t.Fatal(err)
	}
	if a := r.Details().Attributes; a == nil {
		t.Fatal("nil attributes map")
	}

	if err := q.Delete(t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	del := q.DeletedAt()
	*del = del.Add(-time.Hour)
	if q.DeletedAt().Equal(*del) {
		t.Fatal("DeletedAt returns the aggregate's own pointer")
	}
	snap := q.Snapshot()
	*snap.DeletedAt = snap.DeletedAt.Add(-time.Hour)
	if !q.DeletedAt().Equal(micro(t0.Add(time.Minute))) {
		t.Fatal("Snapshot.DeletedAt aliases the aggregate")
	}
}

func TestEventTypeValid(t *testing.T) {
	t.Parallel()
	for _, typ := range []product.EventType{product.EventCreated, product.EventUpdated, product.EventPriceChanged, product.EventStockChanged, product.EventDeleted} {
		if !typ.Valid() || !strings.HasPrefix(string(typ), "product.") {
			t.Errorf("%q", typ)
		}
	}
	for _, typ := range []product.EventType{"", "product.unknown", "PRODUCT.CREATED", "created"} {
		if typ.Valid() {
			t.Errorf("%q is valid", typ)
		}
	}
	for _, typ := range product.EventTypes() {
		if !typ.Valid() {
			t.Errorf("EventTypes lists %q, which is not valid", typ)
		}
	}
}

func TestErrorMessages(t *testing.T) {
	t.Parallel()
	ve := &product.ValidationError{Fields: []product.FieldError{{Field: "sku", Reason: "is required"}, {Field: "stock", Reason: "must not be negative"}}}
	if got, want := ve.Error(), "invalid product: sku: is required; stock: must not be negative"; got != want {
		t.Errorf("ValidationError = %q, want %q", got, want)
	}
	vc := &product.VersionConflictError{Expected: 3, Actual: 5}
	if got, want := vc.Error(), "product version conflict: expected 3, stored 5"; got != want {
		t.Errorf("VersionConflictError = %q, want %q", got, want)
	}
	sentinels := []error{product.ErrNotFound, product.ErrDeleted, product.ErrVersionConflict, product.ErrDuplicateSKU,
		product.ErrInvalidID, product.ErrInvalid, product.ErrIdempotencyKeyReused}
	for i, a := range sentinels {
		for j, b := range sentinels {
			if (i == j) != errors.Is(a, b) {
				t.Errorf("errors.Is(%v, %v) = %v", a, b, errors.Is(a, b))
			}
		}
	}
	if errors.Is(ve, product.ErrVersionConflict) || errors.Is(vc, product.ErrInvalid) {
		t.Error("error types match each other's sentinels")
	}
}

func TestSnapshotDeleted(t *testing.T) {
	t.Parallel()
	now := time.Now()
	if (product.Snapshot{}).Deleted() || !(product.Snapshot{DeletedAt: &now}).Deleted() {
		t.Fatal("Snapshot.Deleted")
	}
}

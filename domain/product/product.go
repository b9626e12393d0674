package product

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on product fields. They protect the read model and the event log from unbounded
// documents; a client that hits one gets a field error, never a truncated product.
const (
	MaxSKULength               = 64
	MaxNameLength              = 200
	MaxDescriptionLength       = 5000
	MaxCategoryLength          = 100
	MaxBrandLength             = 100
	MaxAttributes              = 50
	MaxAttributeKey            = 64
	MaxAttributeValue          = 500
	MaxStock             int64 = 1_000_000_000
	// MaxTags and MaxTagLength bound a product's tags: short labels for filtering and facets,
	// not a second description.
	MaxTags      = 20
	MaxTagLength = 50
)

var skuPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._\-/]*$`)

// Details is everything a client states about a product: the input of create and update.
type Details struct {
	SKU         string
	Name        string
	Description string
	Category    string
	Brand       string
	Price       Money
	Stock       int64
	Attributes  map[string]string
	// Tags are short labels in the client's order, each at most once. Products written
	// before tags existed have none.
	Tags []string
}

// NewDetails validates raw input and collects every field error at once. Tags come last and
// are optional, so that a product without tags reads as it did before tags existed.
func NewDetails(sku, name, description, category, brand string, amount int64, currency string, stock int64, attributes map[string]string, tags ...string) (Details, error) {
	var errs fieldErrors
	sku = strings.TrimSpace(sku)
	name = strings.TrimSpace(name)
	switch {
	case sku == "":
		errs.add("sku", "is required")
	case utf8.RuneCountInString(sku) > MaxSKULength:
		errs.add("sku", "is longer than 64 characters")
	case !skuPattern.MatchString(sku):
		errs.add("sku", "may contain only letters, digits and . _ - /, starting with a letter or digit")
	}
	if name == "" {
		errs.add("name", "is required")
	}
	checkText(&errs, "name", name, MaxNameLength)
	checkText(&errs, "description", description, MaxDescriptionLength)
	checkText(&errs, "category", category, MaxCategoryLength)
	checkText(&errs, "brand", brand, MaxBrandLength)
	validateMoney(&errs, "price", amount, currency)
	validateStock(&errs, stock)
	if len(attributes) > MaxAttributes {
		errs.add("attributes", "has more than 50 keys")
	}
	for _, k := range slices.Sorted(maps.Keys(attributes)) { // sorted: the same input gives the same error list
		v := attributes[k]
		if strings.TrimSpace(k) == "" {
			errs.add("attributes", "keys must not be empty")
		}
		checkText(&errs, "attributes."+k, k, MaxAttributeKey)
		checkText(&errs, "attributes."+k, v, MaxAttributeValue)
	}
	tags = validateTags(&errs, tags)
	if err := errs.err(); err != nil {
		return Details{}, err
	}
	return Details{
		SKU: sku, Name: name, Description: description, Category: category, Brand: brand,
		Price: Money{amount: amount, currency: currency}, Stock: stock, Attributes: maps.Clone(attributes), Tags: tags,
	}, nil
}

// UnmarshalDetailsFromHistory rebuilds details from a stored row or a published event without
// validating them: they were valid under the rules of the release that wrote them, and a rule
// tightened since (a shorter name limit, say) must not make history unreadable. Validation
// belongs to commands; NewDetails is for them.
func UnmarshalDetailsFromHistory(sku, name, description, category, brand string, amount int64, currency string, stock int64, attributes map[string]string, tags []string) Details {
	return Details{
		SKU: sku, Name: name, Description: description, Category: category, Brand: brand,
		Price: Money{amount: amount, currency: currency}, Stock: stock, Attributes: attributes, Tags: tags,
	}.clone()
}

func validateStock(errs *fieldErrors, stock int64) {
	if stock < 0 {
		errs.add("stock", "must not be negative")
	} else if stock > MaxStock {
		errs.add("stock", "is too large")
	}
}

// validateTags checks tags and returns them trimmed. A comma is refused because it separates
// tags in the search filter (tags=a,b), so a tag containing one could never be filtered on.
func validateTags(errs *fieldErrors, tags []string) []string {
	if len(tags) > MaxTags {
		errs.add("tags", fmt.Sprintf("has more than %d tags", MaxTags))
		return nil
	}
	out := make([]string, 0, len(tags))
	seen := make(map[string]bool, len(tags))
	for i, tag := range tags {
		field := fmt.Sprintf("tags[%d]", i)
		tag = strings.TrimSpace(tag)
		switch {
		case !utf8.ValidString(tag):
			errs.add(field, "is not valid UTF-8")
		case tag == "":
			errs.add(field, "must not be empty")
		case utf8.RuneCountInString(tag) > MaxTagLength:
			errs.add(field, fmt.Sprintf("is longer than %d characters", MaxTagLength))
		case strings.ContainsRune(tag, ','):
			errs.add(field, "must not contain a comma (it separates tags in the search filter)")
		case strings.ContainsFunc(tag, unicode.IsControl):
			errs.add(field, "must not contain control characters")
		case seen[tag]:
			errs.add(field, fmt.Sprintf("repeats the tag %q", tag))
		}
		seen[tag] = true
		out = append(out, tag)
	}
	return out
}

func checkText(errs *fieldErrors, field, v string, maxRunes int) {
	if !utf8.ValidString(v) {
		errs.add(field, "is not valid UTF-8")
		return
	}
	if utf8.RuneCountInString(v) > maxRunes {
		errs.add(field, "is too long")
	}
	if strings.ContainsRune(v, 0) {
		errs.add(field, "must not contain NUL characters")
	}
}

// Product is the aggregate root of the catalog. Fields are unexported so that every change
// goes through a method that keeps the invariants and records exactly one event per version.
type Product struct {
	id        ID
	details   Details
	version   int64
	createdAt time.Time
	updatedAt time.Time
	deletedAt *time.Time

	events []Event
}

// New creates a product at version 1 and records product.created.
func New(id ID, d Details, now time.Time) (*Product, error) {
	id, err := ParseID(string(id))
	if err != nil {
		return nil, err
	}
	d, err = d.normalize()
	if err != nil {
		return nil, err
	}
	now = normalizeTime(now)
	p := &Product{id: id, details: d.clone(), version: 1, createdAt: now, updatedAt: now}
	p.record(EventCreated, now)
	return p, nil
}

// UnmarshalProductFromDatabase rehydrates a stored product without recording events. Only
// repositories call it. It trusts history: d is taken as stored (UnmarshalDetailsFromHistory),
// never checked against today's rules; only what makes a row corrupt rather than old (an id
// that is not a UUID, a version below 1) is refused.
func UnmarshalProductFromDatabase(id ID, d Details, version int64, createdAt, updatedAt time.Time, deletedAt *time.Time) (*Product, error) {
	id, err := ParseID(string(id))
	if err != nil {
		return nil, err
	}
	if version < 1 {
		return nil, &ValidationError{Fields: []FieldError{{"version", "must be at least 1"}}}
	}
	p := &Product{id: id, details: d.clone(), version: version, createdAt: createdAt.UTC(), updatedAt: updatedAt.UTC()}
	if deletedAt != nil {
		t := deletedAt.UTC()
		p.deletedAt = &t
	}
	return p, nil
}

// Update replaces the details. The event type names what changed: a change of price alone is
// product.price_changed, of stock alone product.stock_changed, anything else product.updated.
// An update that changes nothing records nothing and keeps the version.
func (p *Product) Update(d Details, now time.Time) error {
	if p.IsDeleted() {
		return ErrDeleted
	}
	d, err := d.normalize()
	if err != nil {
		return err
	}
	p.change(d, now)
	return nil
}

// ChangePrice sets the price alone. Only the price is checked: the other fields are history,
// valid under the rules they were written with, and a price change must not fail on them.
func (p *Product) ChangePrice(price Money, now time.Time) error {
	return p.changeOne(now, func(errs *fieldErrors, d *Details) {
		validateMoney(errs, "price", price.amount, price.currency)
		d.Price = price
	})
}

// ChangeStock sets the stock alone; like ChangePrice, it checks only the stock.
func (p *Product) ChangeStock(stock int64, now time.Time) error {
	return p.changeOne(now, func(errs *fieldErrors, d *Details) {
		validateStock(errs, stock)
		d.Stock = stock
	})
}

// changeOne applies set to a copy of the details and keeps it unless set reported an error.
func (p *Product) changeOne(now time.Time, set func(*fieldErrors, *Details)) error {
	if p.IsDeleted() {
		return ErrDeleted
	}
	var errs fieldErrors
	d := p.details.clone()
	set(&errs, &d)
	if err := errs.err(); err != nil {
		return err
	}
	p.change(d, now)
	return nil
}

// change makes d, already checked, the details and records the event that names the change.
func (p *Product) change(d Details, now time.Time) {
	old := p.details
	if old.equal(d) {
		return
	}
	typ := EventUpdated
	priceOnly, stockOnly := old, old
	priceOnly.Price = d.Price
	stockOnly.Stock = d.Stock
	switch {
	case priceOnly.equal(d):
		typ = EventPriceChanged
	case stockOnly.equal(d):
		typ = EventStockChanged
	}
	p.details = d.clone()
	p.touch(typ, now)
}

// Delete turns the product into a tombstone: the row stays with deleted_at and a new version,
// so that the read model can keep a tombstone no older event can overwrite.
func (p *Product) Delete(now time.Time) error {
	if p.IsDeleted() {
		return ErrDeleted
	}
	now = p.changeTime(now)
	p.deletedAt = &now // the same instant as updated_at, even when the clock stepped back
	p.touch(EventDeleted, now)
	return nil
}

// CheckVersion fails with a VersionConflictError unless the product is at expected.
func (p *Product) CheckVersion(expected int64) error {
	if p.version != expected {
		return &VersionConflictError{Expected: expected, Actual: p.version}
	}
	return nil
}

func (p *Product) touch(typ EventType, now time.Time) {
	now = p.changeTime(now)
	p.version++
	p.updatedAt = now
	p.record(typ, now)
}

func (p *Product) record(typ EventType, now time.Time) {
	p.events = append(p.events, Event{
		ID:               NewID(now),
		Type:             typ,
		AggregateID:      p.id,
		AggregateVersion: p.version,
		OccurredAt:       now,
		State:            p.Snapshot(),
	})
}

// PopEvents returns the events recorded since the last call and forgets them; the repository
// writes them to the outbox in the transaction that stores the product.
func (p *Product) PopEvents() []Event {
	ev := p.events
	p.events = nil
	return ev
}

// ID is the product id.
func (p *Product) ID() ID { return p.id }

// Details returns a copy of the client-stated fields.
func (p *Product) Details() Details { return p.details.clone() }

// Version is the aggregate version: 1 on create, +1 on every change.
func (p *Product) Version() int64 { return p.version }

// CreatedAt is when the product was created.
func (p *Product) CreatedAt() time.Time { return p.createdAt }

// UpdatedAt is when the product last changed.
func (p *Product) UpdatedAt() time.Time { return p.updatedAt }

// DeletedAt is when the product was deleted, nil while it is live.
func (p *Product) DeletedAt() *time.Time {
	if p.deletedAt == nil {
		return nil
	}
	t := *p.deletedAt
	return &t
}

// IsDeleted reports whether the product is a tombstone.
func (p *Product) IsDeleted() bool { return p.deletedAt != nil }

// Snapshot is the full state of the product, the payload every event carries.
func (p *Product) Snapshot() Snapshot {
	return Snapshot{
		ID: p.id, Details: p.details.clone(), Version: p.version,
		CreatedAt: p.createdAt, UpdatedAt: p.updatedAt, DeletedAt: p.DeletedAt(),
	}
}

// changeTime is the time of a change made at now: normalised, and never before the last change,
// because a clock step backwards must not make updated_at run backwards.
func (p *Product) changeTime(now time.Time) time.Time {
	now = normalizeTime(now)
	if now.Before(p.updatedAt) {
		now = p.updatedAt
	}
	return now
}

// normalize validates details that may have been built by hand and returns them in the form
// NewDetails gives (SKU and name trimmed), so the aggregate never holds what NewDetails refuses.
func (d Details) normalize() (Details, error) {
	return NewDetails(d.SKU, d.Name, d.Description, d.Category, d.Brand, d.Price.amount, d.Price.currency, d.Stock, d.Attributes, d.Tags...)
}

// clone copies the maps and slices, and makes absent attributes and tags empty, so that the
// product JSON and the events always carry {} and [] rather than null.
func (d Details) clone() Details {
	d.Attributes = maps.Clone(d.Attributes)
	if d.Attributes == nil {
		d.Attributes = map[string]string{}
	}
	d.Tags = slices.Clone(d.Tags)
	if d.Tags == nil {
		d.Tags = []string{}
	}
	return d
}

func (d Details) equal(o Details) bool {
	return d.SKU == o.SKU && d.Name == o.Name && d.Description == o.Description && d.Category == o.Category &&
		d.Brand == o.Brand && d.Price == o.Price && d.Stock == o.Stock && maps.Equal(d.Attributes, o.Attributes) &&
		len(d.Attributes) == len(o.Attributes) && slices.Equal(d.Tags, o.Tags)
}

// normalizeTime keeps microseconds in UTC: PostgreSQL stores no more, so the event and the
// row agree on every timestamp.
func normalizeTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// Package product is the product domain of the catalog: the Product aggregate, its invariants,
// the domain events it records and the repository contract the write side persists it through.
//
// It imports only the standard library so that every rule about a product can be read, tested
// and changed without a database, a broker or a search cluster in sight.
package product

// Package migrations embeds the SQL migrations of the catalog database, so the binary carries
// its schema and `catalog migrate` needs no files beside it.
package migrations

import "embed"

// FS holds the goose migrations, applied in file-name order.
//
//go:embed *.sql
var FS embed.FS

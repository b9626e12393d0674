package envelope_test

import (
	"fmt"
	"testing"

	"github.com/marketplace/catalog/api/envelope"
	"github.com/marketplace/catalog/domain/product"
)

// BenchmarkUnmarshal decodes the golden product.updated event of every data version: the
// newest is decoded directly, older ones pay for their upcasting steps.
func BenchmarkUnmarshal(b *testing.B) {
	for v := 1; v <= envelope.DataVersion(product.EventUpdated); v++ {
		raw := golden(b, product.EventUpdated, v)
		b.Run(fmt.Sprintf("data_version=%d", v), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := envelope.Unmarshal(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

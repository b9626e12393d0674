package ops_test

import (
	"testing"

	"github.com/marketplace/catalog/application/ops"
)

func TestAllowedDrift(t *testing.T) {
	th := ops.DefaultThresholds()
	for products, want := range map[int64]int64{0: 10, 1000: 10, 10_000: 10, 20_000: 20, 1_000_000: 1000} {
		if got := th.AllowedDrift(products); got != want {
			t.Errorf("AllowedDrift(%d) = %d, want %d", products, got, want)
		}
	}
}

package memory_test

import (
	"context"
	"testing"

	"github.com/marketplace/catalog/adapters/memory"
	"github.com/marketplace/catalog/internal/readmodeltest"
)

func TestReadModelContract(t *testing.T) {
	readmodeltest.RunReadModelContract(t, func(t *testing.T) readmodeltest.Fixture {
		rm, err := memory.NewReadModel(memory.ReadModelConfig{Alias: "contract"})
		if err != nil {
			t.Fatalf("NewReadModel: %v", err)
		}
		return readmodeltest.Fixture{
			Alias:      "contract",
			Projection: rm,
			Search:     rm,
			Target:     rm,
			Versions:   rm,
			EnsureAlias: func(ctx context.Context) (string, error) {
				index, _, err := rm.EnsureAlias(ctx)
				return index, err
			},
		}
	})
}

func TestReadModelConfigValidate(t *testing.T) {
	if err := (memory.ReadModelConfig{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	if err := (memory.ReadModelConfig{Alias: "Bad Alias"}).Validate(); err == nil {
		t.Errorf("bad alias accepted")
	}
	if _, err := memory.NewReadModel(memory.ReadModelConfig{Alias: "../x"}); err == nil {
		t.Errorf("NewReadModel accepted a bad alias")
	}
}

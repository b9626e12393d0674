//go:build stress

package postgres_test

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
)

// TestOutboxPubSubStress runs Watermill's universal Pub/Sub tests ten times in parallel
// (STRESS_TEST_COUNT changes how many) against the outbox: go test -tags stress.
func TestOutboxPubSubStress(t *testing.T) {
	runOutboxConformance(t, tests.TestPubSubStressTest)
}

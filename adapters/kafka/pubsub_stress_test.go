//go:build stress

package kafka_test

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
)

// TestPubSubStress runs Watermill's universal Pub/Sub tests ten times in parallel (STRESS_TEST_COUNT
// changes how many) against each publisher of the adapter with the ConcurrentSubscriber:
// go test -tags stress.
func TestPubSubStress(t *testing.T) {
	runConformance(t, tests.TestPubSubStressTest)
}

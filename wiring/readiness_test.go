package wiring_test

import (
	"testing"
	"time"

	"github.com/marketplace/catalog/internal/testenv"
	"github.com/marketplace/catalog/service"
)

// withProxiedKafka routes the service's Kafka bootstrap traffic through a proxy the test can
// cut. Kafka advertises its own address, so clients that already bootstrapped keep their
// direct connections; every new client (the readiness checks make one per probe) finds
// Kafka unreachable.
func withProxiedKafka(p **testenv.Proxy) readPathOption {
	return func(t *testing.T, c *service.Config) {
		*p = testenv.NewProxy(t, c.KafkaBrokers[0])
		c.KafkaBrokers = []string{(*p).Addr()}
	}
}

// TestReadinessSurvivesAKafkaOutage: while Kafka is unreachable the API stays ready, so a
// load balancer keeps it in rotation, and writes are accepted into the outbox as promised;
// the relay's and the projector's readiness report Kafka down, and recover with it.
func TestReadinessSurvivesAKafkaOutage(t *testing.T) {
	var kp *testenv.Proxy
	rp := startReadPath(t, withProxiedKafka(&kp))
	if r := rp.do(t, "GET", "/readyz?role=relay", ""); r.status != 200 {
		t.Fatalf("relay readiness before the outage: %d %v", r.status, r.body)
	}

	kp.Down()
	r := rp.do(t, "GET", "/readyz", "")
	if r.status != 200 || r.body["role"] != "api" {
		t.Fatalf("API readiness with Kafka down: %d %v, want 200", r.status, r.body)
	}
	if checks, _ := r.body["checks"].(map[string]any); len(checks) != 1 || checks["postgres"] == nil {
		t.Errorf("API readiness checks %v, want postgres only", r.body["checks"])
	}
	for _, role := range []string{"relay", "projector"} {
		r := rp.do(t, "GET", "/readyz?role="+role, "")
		kafka, _ := r.body["checks"].(map[string]any)["kafka"].(map[string]any)
		if r.status != 503 || kafka["status"] != "fail" {
			t.Errorf("%s readiness with Kafka down: %d %v, want 503 with kafka failing", role, r.status, r.body)
		}
	}
	products, outbox := rp.rows(t)
	if w := rp.do(t, "POST", "/v1/products", validBody); w.status != 201 {
		t.Fatalf("write with Kafka down: %d %v, want 201", w.status, w.body)
	}
	if p, o := rp.rows(t); p != products+1 || o != outbox+1 {
		t.Errorf("rows after the write: products %d->%d, outbox %d->%d", products, p, outbox, o)
	}

	kp.Up()
	eventuallyT(t, 30*time.Second, "relay readiness to recover with Kafka", func() bool {
		return rp.do(t, "GET", "/readyz?role=relay", "").status == 200
	})
}

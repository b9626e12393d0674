package metrics_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
)

// TestInstrumentRouter: handler executions and received messages of every instrumented router
// land in the registry, labelled by handler; two routers share one set of series.
func TestInstrumentRouter(t *testing.T) {
	r := newRegistry(t)
	ps := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 16, Persistent: true}, watermill.NopLogger{})
	t.Cleanup(func() { _ = ps.Close() })

	var mu sync.Mutex
	failed := map[string]bool{}
	handled := make(chan string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, name := range []string{"first", "second"} {
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: time.Second}, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		r.InstrumentRouter(router) // before handlers and their middlewares, as documented
		router.AddConsumerHandler(name, name, ps, func(msg *message.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if msg.Payload[0] == 'x' && !failed[msg.UUID] {
				failed[msg.UUID] = true // fail once; gochannel redelivers the nacked message
				return errors.New("transient")
			}
			handled <- name
			return nil
		})
		done := make(chan struct{})
		go func() { defer close(done); _ = router.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		<-router.Running()
	}
	for _, m := range []struct{ topic, payload string }{{"first", "a"}, {"first", "x"}, {"first", "b"}, {"second", "c"}} {
		if err := ps.Publish(m.topic, message.NewMessage(watermill.NewUUID(), []byte(m.payload))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 4; i++ {
		select {
		case <-handled:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of 4 messages handled", i)
		}
	}
	// The counters are updated when the handler returns, after it signalled: wait for them.
	deadline := time.Now().Add(5 * time.Second)
	for {
		okFirst, _ := histogramCount(t, r, "catalog_watermill_handler_execution_time_seconds", map[string]string{"handler_name": "first", "success": "true"})
		failFirst, _ := histogramCount(t, r, "catalog_watermill_handler_execution_time_seconds", map[string]string{"handler_name": "first", "success": "false"})
		okSecond, _ := histogramCount(t, r, "catalog_watermill_handler_execution_time_seconds", map[string]string{"handler_name": "second", "success": "true"})
		received, _ := counterValue(t, r, "catalog_watermill_subscriber_messages_received_total", map[string]string{"handler_name": "first", "acked": "acked"})
		if okFirst == 3 && failFirst == 1 && okSecond == 1 && received == 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("first ok=%d failed=%d, second ok=%d, first acked=%v; want 3, 1, 1, 3", okFirst, failFirst, okSecond, received)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

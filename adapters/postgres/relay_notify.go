package postgres

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

const notifyChannel = "catalog_outbox"

// outboxNotifier LISTENs for the outbox trigger's commit notifications (the payload is the
// lane) on one connection per DB, and wakes every reader of that lane. It starts with its
// first reader and runs until the DB is closed; it reconnects on failure, and while it is
// down the readers' polling covers the gap, so a lost notification costs at most one poll
// interval.
type outboxNotifier struct {
	db  *DB
	log *slog.Logger

	mu      sync.Mutex
	lanes   map[int]map[chan struct{}]struct{}
	started bool
	stop    context.CancelFunc
	done    chan struct{}
}

func newOutboxNotifier(db *DB) *outboxNotifier {
	return &outboxNotifier{db: db, log: slog.Default(), lanes: make(map[int]map[chan struct{}]struct{})}
}

// subscribe returns a channel that receives (at most one pending) wake-up for each commit
// notification of lane, and the function that stops it. Without a notifier (a DB not made by
// Open) the channel never fires and the lane polls.
func (n *outboxNotifier) subscribe(lane int, log *slog.Logger) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	if n == nil {
		return ch, func() {}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.lanes[lane] == nil {
		n.lanes[lane] = make(map[chan struct{}]struct{})
	}
	n.lanes[lane][ch] = struct{}{}
	if !n.started {
		n.started, n.log = true, log
		ctx, cancel := context.WithCancel(context.Background())
		n.stop, n.done = cancel, make(chan struct{})
		go n.listen(ctx)
	}
	return ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		delete(n.lanes[lane], ch)
	}
}

// close stops listening; called by DB.Close.
func (n *outboxNotifier) close() {
	if n == nil {
		return
	}
	n.mu.Lock()
	stop, done := n.stop, n.done
	n.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

func (n *outboxNotifier) listen(ctx context.Context) {
	defer close(n.done)
	for ctx.Err() == nil {
		err := n.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		n.log.Warn("relay: LISTEN connection lost; lanes poll every interval until it is back", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (n *outboxNotifier) listenOnce(ctx context.Context) error {
	pc, err := n.db.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := pc.Hijack() // a LISTEN connection must not go back to the pool
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	for {
		note, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		lane, err := strconv.Atoi(note.Payload)
		if err != nil {
			continue
		}
		n.mu.Lock()
		for ch := range n.lanes[lane] {
			select {
			case ch <- struct{}{}:
			default: // a wake-up is already pending
			}
		}
		n.mu.Unlock()
	}
}

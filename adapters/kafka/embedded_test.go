package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/marketplace/catalog/adapters/datadir"
	"github.com/marketplace/catalog/adapters/kafka"
	"github.com/marketplace/catalog/internal/testenv"
)

// TestEmbeddedBrokerKeepsItsLogAndOffsetsInItsDirectory: records and a consumer group's
// committed offsets written to a broker with a Dir are there after a restart on that Dir,
// and the topics created on the first start are not re-created empty. (SIGKILL of the whole
// process is covered by wiring's TestEmbeddedSurvivesSIGKILLDuringWrites.)
func TestEmbeddedBrokerKeepsItsLogAndOffsetsInItsDirectory(t *testing.T) {
	dir, addr := t.TempDir(), testenv.Addr(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	topic := kafka.TopicSpec{Name: "product.events", Partitions: 3}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	b, err := kafka.StartEmbeddedBroker(kafka.EmbeddedConfig{Addr: addr, Dir: dir}, log, topic)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic.Name))
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	for i := 0; i < n; i++ {
		cl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i % 17)), Value: []byte(fmt.Sprint(i))}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	// The group has consumed everything but the last 10 records of partition 0.
	ends, err := adm.ListEndOffsets(ctx, topic.Name)
	if err != nil {
		t.Fatal(err)
	}
	commit := kadm.Offsets{}
	ends.Each(func(o kadm.ListedOffset) {
		off := o.Offset
		if o.Partition == 0 {
			off -= 10
		}
		commit.AddOffset(o.Topic, o.Partition, off, -1)
	})
	if _, err := adm.CommitOffsets(ctx, "projector", commit); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	b.Close()

	b, err = kafka.StartEmbeddedBroker(kafka.EmbeddedConfig{Addr: addr, Dir: dir}, log, topic)
	if err != nil {
		t.Fatalf("restart on the same directory: %v", err)
	}
	defer b.Close()
	cl, err = kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm = kadm.NewClient(cl)
	after, err := adm.ListEndOffsets(ctx, topic.Name)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	after.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != n {
		t.Fatalf("after the restart the topic ends at %d records in all, want %d", total, n)
	}
	lag, err := adm.Lag(ctx, "projector")
	if err != nil {
		t.Fatal(err)
	}
	if got := lag["projector"].Lag.Total(); got != 10 {
		t.Fatalf("after the restart the group lags %d records, want the 10 it had not committed", got)
	}
}

// TestEmbeddedBrokerDirectoryIsExclusive: a second broker on the same directory fails at once
// with datadir.ErrLocked instead of loading a log another process is appending to.
func TestEmbeddedBrokerDirectoryIsExclusive(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := kafka.StartEmbeddedBroker(kafka.EmbeddedConfig{Addr: testenv.Addr(t), Dir: dir}, log)
	if err != nil {
		t.Fatal(err)
	}
	_, err = kafka.StartEmbeddedBroker(kafka.EmbeddedConfig{Addr: testenv.Addr(t), Dir: dir}, log)
	if !errors.Is(err, datadir.ErrLocked) {
		t.Fatalf("second broker on the directory: %v, want ErrLocked", err)
	}
	b.Close()
	b, err = kafka.StartEmbeddedBroker(kafka.EmbeddedConfig{Addr: testenv.Addr(t), Dir: dir}, log)
	if err != nil {
		t.Fatalf("after the first one closed: %v", err)
	}
	b.Close()
}

func TestEmbeddedConfigValidate(t *testing.T) {
	for _, addr := range []string{"", "localhost", "127.0.0.1:port"} {
		if err := (kafka.EmbeddedConfig{Addr: addr}).Validate(); err == nil {
			t.Errorf("Validate(%q) = nil, want an error", addr)
		}
	}
	if err := (kafka.EmbeddedConfig{Addr: "127.0.0.1:9092"}).Validate(); err != nil {
		t.Errorf("Validate(127.0.0.1:9092) = %v", err)
	}
}

package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TopicSpec describes a topic the service needs.
type TopicSpec struct {
	// Name is the topic name.
	Name string
	// Partitions is the partition count used when the topic is created. The projector
	// processes partitions in parallel, so this bounds its parallelism.
	Partitions int32
	// ReplicationFactor is -1 for the broker default.
	ReplicationFactor int16
}

// EnsureTopics creates the topics that do not exist yet; existing topics are left as they are
// (a partition count is never changed behind an operator's back).
func EnsureTopics(ctx context.Context, brokers []string, specs ...TopicSpec) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DialTimeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("kafka: admin client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, s := range specs {
		rf := s.ReplicationFactor
		if rf == 0 {
			rf = -1
		}
		resp, err := adm.CreateTopic(ctx, s.Partitions, rf, nil, s.Name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("kafka: create topic %s: %w", s.Name, err)
		}
	}
	return nil
}

// Ping asks the cluster for its metadata: the readiness check of the Kafka dependency.
func Ping(ctx context.Context, brokers []string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DialTimeout(3*time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).BrokerMetadata(ctx); err != nil {
		return fmt.Errorf("kafka: metadata: %w", err)
	}
	return nil
}

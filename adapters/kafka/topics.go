package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
	// ReplicationFactor is the number of copies of each partition; 0 or -1 takes the
	// brokers' default.replication.factor.
	ReplicationFactor int16
	// MinInsyncReplicas is the topic's min.insync.replicas: an acks=all write is refused
	// unless this many replicas are in sync, so an acknowledged event survives the loss of
	// all but one of them. 0 takes the brokers' default.
	MinInsyncReplicas int
}

// EnsureTopics creates the topics that do not exist yet, with their partitions, replication
// factor and min.insync.replicas; existing topics are left as they are (a partition count or
// replication is never changed behind an operator's back).
func EnsureTopics(ctx context.Context, cfg Config, specs ...TopicSpec) error {
	cfg.setDefaults()
	cl, err := kgo.NewClient(cfg.clientOpts("-admin", kgo.DialTimeout(5*time.Second))...)
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
		var configs map[string]*string
		if s.MinInsyncReplicas > 0 {
			configs = map[string]*string{"min.insync.replicas": kadm.StringPtr(strconv.Itoa(s.MinInsyncReplicas))}
		}
		resp, err := adm.CreateTopic(ctx, s.Partitions, rf, configs, s.Name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return explain("create topic "+s.Name, err, cfg)
		}
	}
	return nil
}

// Ping asks the cluster for its metadata with cfg's credentials: the readiness check of the
// Kafka dependency, and the check a role makes before it starts, so a wrong password or CA
// stops the process at once with the setting to fix instead of a consumer retrying forever.
// Authentication and TLS failures are not retried by franz-go, so they return at once; ctx
// bounds an unreachable cluster.
func Ping(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	cl, err := kgo.NewClient(cfg.clientOpts("-ping", kgo.DialTimeout(3*time.Second))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).BrokerMetadata(ctx); err != nil {
		return explain("metadata", err, cfg)
	}
	return nil
}

package service

import (
	"fmt"
	"slices"
	"strings"
)

// The roles `catalog serve` can run (CATALOG_ROLES). A deployment that scales them apart runs
// one set of replicas per role; any mix runs in one process.
const (
	// RoleAPI is the REST API: writes to Postgres and the outbox, reads by id from Postgres,
	// searches through the read model's alias. It needs neither Kafka nor a projector.
	RoleAPI = "api"
	// RoleRelay is the outbox relay and the outbox retention job: Postgres to Kafka. Relays
	// share the outbox lanes, each lane owned by one relay at a time.
	RoleRelay = "relay"
	// RoleProjector is the projector: Kafka to the search cluster, in the projector's
	// consumer group, whose replicas share the partitions.
	RoleProjector = "projector"
	// RoleAdmin is the gRPC admin port (rebuilds, index management, status, verify, DLQ),
	// the recovery of rebuilds whose runner died and the sampler of the operational gauges.
	// Any replica with it answers admin calls: rebuild state lives in Postgres.
	RoleAdmin = "admin"
)

// AllRoles are every role, in the order logs and docs list them; the default of Roles.
var AllRoles = []string{RoleAPI, RoleRelay, RoleProjector, RoleAdmin}

// Runs reports whether `catalog serve` runs role. No roles at all (a Config built in code
// without SetDefaults) means every role, as SetDefaults would make it.
func (c Config) Runs(role string) bool { return len(c.Roles) == 0 || slices.Contains(c.Roles, role) }

// RunsAll reports whether `catalog serve` runs every role (the default).
func (c Config) RunsAll() bool {
	for _, r := range AllRoles {
		if !c.Runs(r) {
			return false
		}
	}
	return true
}

// NeedsKafka reports whether any role of the process talks to Kafka: an API-only replica
// does not, so a Kafka outage cannot keep it from starting.
func (c Config) NeedsKafka() bool {
	return c.Runs(RoleRelay) || c.Runs(RoleProjector) || c.Runs(RoleAdmin)
}

// NeedsSearch reports whether any role of the process uses the search cluster: the API
// (searches), the projector and the admin port (rebuilds, status).
func (c Config) NeedsSearch() bool {
	return c.Runs(RoleAPI) || c.Runs(RoleProjector) || c.Runs(RoleAdmin)
}

// validateRoles checks CATALOG_ROLES: known roles, each once, at least one; and every role
// when a component is embedded, since the embedded broker and search engine live inside the
// one process that holds their directory.
func (c Config) validateRoles(bad func(name string, v any, want string)) {
	raw := strings.Join(c.Roles, ",")
	want := "want a comma-separated subset of " + strings.Join(AllRoles, ",")
	if len(c.Roles) == 0 {
		bad("CATALOG_ROLES", raw, want+" with at least one role")
		return
	}
	for i, r := range c.Roles {
		if !slices.Contains(AllRoles, r) {
			bad("CATALOG_ROLES", raw, fmt.Sprintf("%s; %q is not a role", want, r))
			return
		}
		if slices.Contains(c.Roles[:i], r) {
			bad("CATALOG_ROLES", raw, fmt.Sprintf("%s; %q is listed twice", want, r))
			return
		}
	}
	if c.RunsAll() {
		return
	}
	switch {
	case len(c.KafkaBrokers) == 0:
		bad("CATALOG_ROLES", raw, "the embedded Kafka broker (KAFKA_BROKERS empty) runs inside one process with every role: "+
			"leave CATALOG_ROLES unset, or set KAFKA_BROKERS and ELASTICSEARCH_URL to run the roles apart")
	case strings.TrimSpace(c.ElasticsearchURL) == "":
		bad("CATALOG_ROLES", raw, "the embedded search engine (ELASTICSEARCH_URL empty) runs inside one process with every role: "+
			"leave CATALOG_ROLES unset, or set ELASTICSEARCH_URL to run the roles apart")
	}
}

// validateReplication checks the replication settings of the topics the service creates.
func (c Config) validateReplication(bad func(name string, v any, want string)) {
	rf, isr := c.TopicReplicationFactor, c.TopicMinInsyncReplicas
	if rf < 0 || rf > 32 {
		bad("TOPIC_REPLICATION_FACTOR", rf, "want an integer in 1..32, or 0 for the brokers' default")
	}
	if isr < 0 || isr > 32 {
		bad("TOPIC_MIN_INSYNC_REPLICAS", isr, "want an integer in 1..32, or 0 for the brokers' default")
	}
	if rf > 0 && isr > rf {
		bad("TOPIC_MIN_INSYNC_REPLICAS", isr, fmt.Sprintf("want at most TOPIC_REPLICATION_FACTOR (%d): no write could ever be acknowledged", rf))
	}
	if len(c.KafkaBrokers) == 0 && rf > 1 {
		bad("TOPIC_REPLICATION_FACTOR", rf, "the embedded broker (KAFKA_BROKERS empty) is a single broker: want 0 or 1")
	}
}

package service_test

import (
	"testing"

	"github.com/marketplace/catalog/service"
)

// TestRunsOnlyTheNamedRoles: a replica runs the roles it names and no other; a Config built in
// code without SetDefaults (no roles at all) runs every role, as the default would.
func TestRunsOnlyTheNamedRoles(t *testing.T) {
	relay := service.Config{Roles: []string{service.RoleRelay}}
	for _, r := range service.AllRoles {
		if got, want := relay.Runs(r), r == service.RoleRelay; got != want {
			t.Errorf("roles relay: Runs(%s) = %v, want %v", r, got, want)
		}
	}
	if relay.RunsAll() || !relay.NeedsKafka() || relay.NeedsSearch() {
		t.Errorf("roles relay: RunsAll %v NeedsKafka %v NeedsSearch %v, want false true false",
			relay.RunsAll(), relay.NeedsKafka(), relay.NeedsSearch())
	}
	if api := (service.Config{Roles: []string{service.RoleAPI}}); api.NeedsKafka() {
		t.Error("an api-only replica needs Kafka")
	}
	var unset service.Config
	for _, r := range service.AllRoles {
		if !unset.Runs(r) {
			t.Errorf("no roles set: Runs(%s) = false, want every role", r)
		}
	}
	if !unset.RunsAll() {
		t.Error("no roles set: RunsAll = false")
	}
	unset.SetDefaults()
	if !unset.RunsAll() {
		t.Errorf("defaults: roles %v, want every role", unset.Roles)
	}
}

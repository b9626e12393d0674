package deploytest

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

// TestDockerfileRunsEmbeddedModeAsNonRoot: the image prepares CATALOG_DATA_DIR owned by the
// user it runs as (distroless has no shell to create it, /var/lib belongs to root), stamps
// the build into the binary and the OCI labels, and has no HEALTHCHECK (no curl in the image:
// compose runs `catalog healthcheck`).
func TestDockerfileRunsEmbeddedModeAsNonRoot(t *testing.T) {
	df := string(repoFile(t, "Dockerfile"))
	env := regexp.MustCompile(`CATALOG_DATA_DIR=(\S+)`).FindStringSubmatch(df)
	if env == nil {
		t.Fatal("Dockerfile does not set CATALOG_DATA_DIR")
	}
	if !regexp.MustCompile(`(?m)^COPY --from=build --chown=nonroot:nonroot \S+ ` + regexp.QuoteMeta(env[1]) + `\s*$`).MatchString(df) {
		t.Errorf("Dockerfile does not create %s owned by nonroot", env[1])
	}
	if regexp.MustCompile(`(?m)^HEALTHCHECK`).MatchString(df) {
		t.Error("Dockerfile has a HEALTHCHECK; the distroless image has nothing to run it with but catalog healthcheck, which compose calls")
	}
	for _, want := range []string{"service.version=${VERSION}", "service.commit=${COMMIT}", "org.opencontainers.image.version", "org.opencontainers.image.revision"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	var c struct {
		Services map[string]struct {
			Command     []string `yaml:"command"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(repoFile(t, "docker-compose.yml"), &c); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"catalog", "relay", "projector"} {
		if got := strings.Join(c.Services[name].Healthcheck.Test, " "); got != "CMD /usr/local/bin/catalog healthcheck" {
			t.Errorf("compose service %s healthcheck = %q, want the binary's own probe", name, got)
		}
	}
}

// TestAlertRulesLinkTheRunbook: every alert has a severity and a runbook_url whose anchor is
// a heading of docs/RUNBOOK.md (GitHub's anchor rules), so a page always lands on its section.
func TestAlertRulesLinkTheRunbook(t *testing.T) {
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(repoFile(t, "deploy/prometheus/catalog-rules.yaml"), &rules); err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllStringSubmatch(string(repoFile(t, "docs/RUNBOOK.md")), -1) {
		a := strings.ToLower(strings.TrimSpace(m[1]))
		a = regexp.MustCompile(`[^a-z0-9 _-]`).ReplaceAllString(a, "")
		anchors[strings.ReplaceAll(a, " ", "-")] = true
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if s := r.Labels["severity"]; s != "page" && s != "ticket" {
				t.Errorf("%s: severity %q, want page or ticket", r.Alert, s)
			}
			url := r.Annotations["runbook_url"]
			_, anchor, ok := strings.Cut(url, "docs/RUNBOOK.md#")
			if !ok || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q does not point at a heading of docs/RUNBOOK.md", r.Alert, url)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s has no summary", r.Alert)
			}
		}
	}
	if n < 15 {
		t.Fatalf("%d alerts; the runbook describes more", n)
	}
}

// TestDashboardIsGrafanaJSON: the dashboard parses, has a uid and panels with queries on the
// data source variable, so it imports into any Grafana with its own Prometheus.
func TestDashboardIsGrafanaJSON(t *testing.T) {
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(repoFile(t, "deploy/grafana/catalog.json"), &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" {
		t.Error("the dashboard has no uid")
	}
	queries := 0
	for _, p := range d.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		queries += len(p.Targets)
	}
	if queries < 20 {
		t.Fatalf("%d queries; the dashboard misses sections", queries)
	}
}

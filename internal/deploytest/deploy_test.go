// Package deploytest checks the deployment files users start from: the compose file parses,
// names every service the runbook's startup order needs, and runs each role with the
// configuration the service reads.
package deploytest

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

func repoFile(t *testing.T, name string) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type compose struct {
	Services map[string]struct {
		Image       string         `yaml:"image"`
		Build       any            `yaml:"build"`
		Command     []string       `yaml:"command"`
		Environment map[string]any `yaml:"environment"`
		DependsOn   map[string]any `yaml:"depends_on"`
	} `yaml:"services"`
}

func TestComposeNamesEveryServiceTheRunbookNeeds(t *testing.T) {
	var c compose
	if err := yaml.Unmarshal(repoFile(t, "docker-compose.yml"), &c); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	runbook := string(repoFile(t, "docs/RUNBOOK.md"))
	roles := map[string]string{"migrate": "migrate", "catalog": "serve", "relay": "relay", "projector": "project"}
	for _, name := range []string{"postgres", "kafka", "elasticsearch", "migrate", "catalog", "relay", "projector"} {
		svc, ok := c.Services[name]
		if !ok {
			t.Errorf("compose lacks service %q", name)
			continue
		}
		if !strings.Contains(runbook, "`"+name+"`") {
			t.Errorf("docs/RUNBOOK.md does not mention compose service `%s`", name)
		}
		if cmd, isRole := roles[name]; isRole {
			if len(svc.Command) == 0 || svc.Command[0] != cmd {
				t.Errorf("service %s runs %v, want catalog %s", name, svc.Command, cmd)
			}
			for _, env := range []string{"DATABASE_URL", "KAFKA_BROKERS", "ELASTICSEARCH_URL"} {
				if _, ok := svc.Environment[env]; !ok {
					t.Errorf("service %s lacks %s", name, env)
				}
			}
			if name != "migrate" {
				if _, ok := svc.DependsOn["migrate"]; !ok {
					t.Errorf("service %s does not wait for migrate", name)
				}
			}
		}
	}
}

func TestDockerfileIsMultiStageStaticAndNonRoot(t *testing.T) {
	df := string(repoFile(t, "Dockerfile"))
	for _, want := range []string{"AS build", "CGO_ENABLED=0", "USER nonroot", "ENTRYPOINT"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if strings.Count(df, "\nFROM ") < 1 || !strings.HasPrefix(strings.TrimSpace(df[strings.Index(df, "FROM"):]), "FROM golang") {
		t.Error("Dockerfile is not a multi-stage build from a Go builder")
	}
}

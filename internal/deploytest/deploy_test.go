// Package deploytest checks the deployment files users start from: the compose file parses,
// names every service the runbook's startup order needs, and runs each role with the
// configuration the service reads.
package deploytest

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"

	"github.com/marketplace/catalog/service"
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
		Secrets     []string       `yaml:"secrets"`
		Ports       []string       `yaml:"ports"`
	} `yaml:"services"`
	Secrets map[string]struct {
		File        string `yaml:"file"`
		Environment string `yaml:"environment"`
	} `yaml:"secrets"`
}

// secretVars are the variables that hold a credential directly; a deployment file names the
// *_FILE variant and mounts the secret instead.
var secretVars = []string{"ADMIN_TOKEN", "KAFKA_SASL_PASSWORD", "ELASTICSEARCH_API_KEY", "ELASTICSEARCH_PASSWORD"}

// TestComposeProtectsTheAdminPort: every `catalog serve` of the compose file that listens
// beyond loopback takes the admin token from a compose secret (ADMIN_TOKEN_FILE under
// /run/secrets, the secret declared from a file outside the repository), publishes the admin
// port on the host's loopback only, and no credential is written into the file itself.
func TestComposeProtectsTheAdminPort(t *testing.T) {
	var c compose
	if err := yaml.Unmarshal(repoFile(t, "docker-compose.yml"), &c); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	served := 0
	for name, svc := range c.Services {
		for _, v := range secretVars {
			if _, ok := svc.Environment[v]; ok {
				t.Errorf("service %s sets %s in the compose file; mount a secret and set %s_FILE", name, v, v)
			}
		}
		if len(svc.Command) == 0 || svc.Command[0] != "serve" {
			continue
		}
		served++
		addr, _ := svc.Environment["GRPC_ADDR"].(string)
		if addr == "" {
			addr = service.DefaultGRPCAddr
		}
		if service.IsLoopback(addr) {
			continue
		}
		file, _ := svc.Environment["ADMIN_TOKEN_FILE"].(string)
		secret, ok := strings.CutPrefix(file, "/run/secrets/")
		if !ok || !slices.Contains(svc.Secrets, secret) {
			t.Errorf("service %s serves GRPC_ADDR=%s without ADMIN_TOKEN_FILE=/run/secrets/<one of its secrets %v> (got %q)", name, addr, svc.Secrets, file)
			continue
		}
		if decl, ok := c.Secrets[secret]; !ok || decl.File == "" {
			t.Errorf("secret %s of service %s is not declared from a file", secret, name)
		}
		_, port, _ := net.SplitHostPort(addr)
		for _, p := range svc.Ports {
			if strings.HasSuffix(p, ":"+port) && !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("service %s publishes the admin port beyond the host's loopback: %q", name, p)
			}
		}
	}
	if served == 0 {
		t.Fatal("no service runs catalog serve")
	}
}

// TestDockerfileBakesNoSecret: the image sets no credential; the admin port it opens on every
// interface is refused by serve until a token or mutual TLS is configured at run time.
func TestDockerfileBakesNoSecret(t *testing.T) {
	df := string(repoFile(t, "Dockerfile"))
	for _, v := range secretVars {
		if regexp.MustCompile(`(?m)^\s*(ENV|ARG)\b.*\b`+v+`=`).MatchString(df) || regexp.MustCompile(`(?m)^\s+`+v+`=`).MatchString(df) {
			t.Errorf("Dockerfile sets %s", v)
		}
	}
	if !strings.Contains(df, "ADMIN_TOKEN_FILE") {
		t.Error("Dockerfile does not tell how to give serve its admin token")
	}
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

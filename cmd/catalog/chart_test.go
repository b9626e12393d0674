package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/marketplace/catalog/service"
)

// TestChartHandlesEverySetting: the Helm chart names every variable the service reads, so a
// new setting cannot ship without a way to set it on Kubernetes. Credentials are mounted
// files (the *_FILE variables); their plain variants must be refused in the ConfigMap.
func TestChartHandlesEverySetting(t *testing.T) {
	chart := filepath.Join("..", "..", "deploy", "helm", "catalog")
	var text strings.Builder
	err := filepath.WalkDir(chart, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		text.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	configMap, err := os.ReadFile(filepath.Join(chart, "templates", "configmap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	refused := regexp.MustCompile(`\$forbidden := list ([^\n]*)`).FindSubmatch(configMap)
	if refused == nil {
		t.Fatal("configmap.yaml has no list of refused credentials")
	}
	for _, st := range settingsOf(&service.Config{}) {
		if !regexp.MustCompile(`\b` + st.env + `\b`).MatchString(text.String()) {
			t.Errorf("the chart does not handle %s", st.env)
		}
	}
	for _, v := range []string{"DATABASE_URL", "ADMIN_TOKEN", "KAFKA_SASL_PASSWORD", "ELASTICSEARCH_API_KEY", "ELASTICSEARCH_PASSWORD"} {
		if !strings.Contains(string(refused[1]), `"`+v+`"`) {
			t.Errorf("configmap.yaml does not refuse the credential %s in config", v)
		}
	}
}

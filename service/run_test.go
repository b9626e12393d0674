package service

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// The first line a process logs names its build, so a log search answers "which release
// was running when this happened".
func TestProcessLogsItsBuildAtStart(t *testing.T) {
	var buf bytes.Buffer
	p := NewProcess(NewLogger(&buf, "text", "info"))
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := Build()
	first, _, _ := strings.Cut(buf.String(), "\n")
	for _, want := range []string{`msg="catalog starting"`, "version=" + b.Version, "commit=" + b.Commit, "go_version=" + b.GoVersion} {
		if !strings.Contains(first, want) {
			t.Fatalf("first log line %q lacks %q", first, want)
		}
	}
}

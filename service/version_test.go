package service

import (
	"runtime/debug"
	"testing"
)

func TestBuildPrefersLinkTimeValues(t *testing.T) {
	read := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "v0.0.0-pseudo"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-01-01T00:00:00Z"}}}, true
	}
	b := buildFrom("v1.2.3", "feedbee", "2026-02-02T00:00:00Z", read)
	want := BuildInfo{Version: "v1.2.3", Commit: "feedbee", BuildTime: "2026-02-02T00:00:00Z", GoVersion: "go1.99"}
	if b != want {
		t.Fatalf("build = %+v, want %+v", b, want)
	}
}

func TestBuildFallsBackToTheToolchainStamp(t *testing.T) {
	read := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"},
				{Key: "vcs.time", Value: "2026-01-01T00:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}, true
	}
	b := buildFrom("", "", "", read)
	want := BuildInfo{Version: "(devel)", Commit: "0123456789ab-dirty", BuildTime: "2026-01-01T00:00:00Z", GoVersion: "go1.99"}
	if b != want {
		t.Fatalf("build = %+v, want %+v", b, want)
	}
	none := buildFrom("", "", "", func() (*debug.BuildInfo, bool) { return nil, false })
	if none.Version != "(devel)" || none.Commit != "unknown" || none.BuildTime != "unknown" || none.GoVersion == "" {
		t.Fatalf("build without any information = %+v", none)
	}
}

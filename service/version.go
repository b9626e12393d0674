package service

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set at link time by `make build` and the Dockerfile:
//
//	go build -ldflags "-X github.com/marketplace/catalog/service.version=v1.2.3
//	  -X github.com/marketplace/catalog/service.commit=abc1234
//	  -X github.com/marketplace/catalog/service.buildTime=2026-01-02T03:04:05Z"
//
// A plain `go build` or `go install` leaves them empty; Build then falls back to what the Go
// toolchain stamps into every binary (module version, VCS revision and time).
var (
	version   string
	commit    string
	buildTime string
)

// BuildInfo says which build of catalog is running.
type BuildInfo struct {
	// Version is the release (a tag such as v1.2.0), or "(devel)" for an untagged build.
	Version string `json:"version"`
	// Commit is the VCS revision, suffixed "-dirty" when the tree had uncommitted changes,
	// or "unknown" when the binary was built outside a repository.
	Commit string `json:"commit"`
	// BuildTime is when the commit was made or the binary linked (RFC 3339), or "unknown".
	BuildTime string `json:"build_time"`
	// GoVersion is the Go toolchain that compiled the binary.
	GoVersion string `json:"go_version"`
}

// String is the one line `catalog --version` prints.
func (b BuildInfo) String() string {
	return fmt.Sprintf("catalog %s (commit %s, built %s, %s)", b.Version, b.Commit, b.BuildTime, b.GoVersion)
}

// Build returns the running binary's build: the link-time values where set, the toolchain's
// build information otherwise.
func Build() BuildInfo {
	return buildFrom(version, commit, buildTime, debug.ReadBuildInfo)
}

func buildFrom(ver, rev, at string, read func() (*debug.BuildInfo, bool)) BuildInfo {
	b := BuildInfo{Version: ver, Commit: rev, BuildTime: at, GoVersion: runtime.Version()}
	if bi, ok := read(); ok {
		var modified bool
		var vcsRev, vcsTime string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				vcsRev = s.Value
			case "vcs.time":
				vcsTime = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if b.Version == "" && bi.Main.Version != "" {
			b.Version = bi.Main.Version
		}
		if b.Commit == "" && vcsRev != "" {
			b.Commit = vcsRev[:min(12, len(vcsRev))]
			if modified {
				b.Commit += "-dirty"
			}
		}
		if b.BuildTime == "" {
			b.BuildTime = vcsTime
		}
		if bi.GoVersion != "" {
			b.GoVersion = bi.GoVersion
		}
	}
	def := func(p *string, v string) {
		if strings.TrimSpace(*p) == "" {
			*p = v
		}
	}
	def(&b.Version, "(devel)")
	def(&b.Commit, "unknown")
	def(&b.BuildTime, "unknown")
	return b
}

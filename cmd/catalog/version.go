package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/marketplace/catalog/service"
)

// skipConfig replaces the root's configuration check for commands that read no setting:
// `catalog version` must answer even where the environment is for another release.
func skipConfig(*cobra.Command, []string) error { return nil }

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version [--json]",
		Short: "Print the version, commit, build time and Go version of this binary",
		Long: `Prints which build is running: the release version, the VCS commit (suffixed -dirty for a
build from a modified tree), when it was built and the Go toolchain. The same values are the
labels of the catalog_build_info metric and of the "catalog starting" log line.`,
		Args:              cobra.NoArgs,
		PersistentPreRunE: skipConfig,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := service.Build()
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), b)
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), b.String())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the build as JSON")
	return cmd
}

// healthcheckTimeout bounds one check: a container runtime kills a hanging check anyway, and
// a hung answer is as good as none.
const healthcheckTimeout = 3 * time.Second

func newHealthcheckCmd(cfg *service.Config) *cobra.Command {
	var addr string
	var live bool
	cmd := &cobra.Command{
		Use:   "healthcheck [--addr host:port] [--live]",
		Short: "Probe this container's own catalog over HTTP: exit 0 when ready, 1 when not",
		Long: `For container runtimes whose health check runs a command inside the container (docker
compose, Docker's HEALTHCHECK): the distroless image has no shell and no curl, so the binary
probes itself. It asks GET /readyz (the API's readiness: PostgreSQL reachable) on --addr,
which defaults to METRICS_ADDR when set (the only HTTP listener of 'catalog relay' and
'catalog project', which answer /readyz for their own role there) and to HTTP_ADDR otherwise;
a wildcard host (0.0.0.0, [::]) is asked on the loopback. --live asks /healthz instead (the
process serves HTTP; nothing else is checked). With HTTP_TLS_CERT_FILE set it speaks TLS to
HTTP_ADDR without verifying the certificate: the probe never leaves the container.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tlsOn := false
			if addr == "" {
				addr = cfg.HTTPAddr
				tlsOn = cfg.HTTPTLSCertFile != ""
				if cfg.MetricsAddr != "" {
					addr, tlsOn = cfg.MetricsAddr, false
				}
			}
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return usageError{fmt.Errorf("--addr %q: want host:port", addr)}
			}
			if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
				host = "127.0.0.1"
			}
			path := "/readyz"
			if live {
				path = "/healthz"
			}
			scheme := "http"
			if tlsOn {
				scheme = "https"
			}
			url := scheme + "://" + net.JoinHostPort(host, port) + path
			return probe(cmd.Context(), url, tlsOn, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "", "host:port to probe (default METRICS_ADDR if set, else HTTP_ADDR)")
	cmd.Flags().BoolVar(&live, "live", false, "probe liveness (/healthz) instead of readiness (/readyz)")
	return cmd
}

func probe(ctx context.Context, url string, insecure bool, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{
		// The probe talks to its own process through the loopback, whose certificate names
		// the service, not 127.0.0.1: there is nobody in between to verify against.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: insecure, MinVersion: tls.VersionTLS12}, //nolint:gosec // see above
	}}
	resp, err := client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("healthcheck %s: no answer within %s", url, healthcheckTimeout)
		}
		return fmt.Errorf("healthcheck %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck %s: %s %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	_, err = fmt.Fprintln(out, strings.TrimSpace(string(body)))
	return err
}

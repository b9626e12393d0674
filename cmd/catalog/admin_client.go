package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	operationsv1 "github.com/marketplace/catalog/api/gen/catalog/operations/v1"
	projectionv1 "github.com/marketplace/catalog/api/gen/catalog/projection/v1"
	"github.com/marketplace/catalog/internal/tlsfiles"
	"github.com/marketplace/catalog/ports/adminauth"
	"github.com/marketplace/catalog/service"
)

// This file is the CLI's one client of the gRPC admin port on GRPC_ADDR: how it dials (TLS,
// the admin token), and how a failed call reads to an operator. Every admin command (index,
// rebuild, status, verify) dials through dialAdminConn, by dialAdmin or dialOperations.

// dialAdminConn connects to the admin port on GRPC_ADDR with the CLI's connection settings:
// TLS when GRPC_CLIENT_TLS* is set (with a client certificate for mutual TLS), the admin token
// (ADMIN_TOKEN or ADMIN_TOKEN_FILE) on every call, the catalog-cli user agent, keepalive pings
// for long calls. The connection is lazy: an unreachable port shows up as UNAVAILABLE on the
// first call, which adminError explains.
func dialAdminConn(cfg *service.Config) (*grpc.ClientConn, error) {
	target, err := dialTarget(cfg.GRPCAddr)
	if err != nil {
		return nil, usageError{fmt.Errorf("GRPC_ADDR=%q: %w", cfg.GRPCAddr, err)}
	}
	creds := insecure.NewCredentials()
	if cfg.GRPCClientTLSEnabled() {
		tc, err := adminClientTLS(cfg)
		if err != nil {
			return nil, usageError{err}
		}
		creds = credentials.NewTLS(tc)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithUserAgent("catalog-cli"),
		// A watch or a verify can be quiet for long stretches; pings keep proxies from
		// dropping it and detect a dead server.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
	if cfg.AdminToken.IsSet() {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken{token: cfg.AdminToken}))
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("GRPC_ADDR=%s: %w", cfg.GRPCAddr, err)
	}
	return conn, nil
}

// adminClientTLS is the CLI's TLS configuration of GRPC_CLIENT_TLS_*.
func adminClientTLS(cfg *service.Config) (*tls.Config, error) {
	tc, err := tlsfiles.ClientConfig(cfg.GRPCClientTLSCAFile, cfg.GRPCClientTLSCertFile, cfg.GRPCClientTLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("GRPC_CLIENT_TLS_*: %w", err)
	}
	tc.ServerName = cfg.GRPCClientTLSServerName
	return tc, nil
}

// bearerToken sends the admin token with every call (credentials.PerRPCCredentials).
type bearerToken struct{ token service.Secret }

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{adminauth.Header: adminauth.Bearer(b.token.Reveal())}, nil
}

// RequireTransportSecurity is false: the default admin port is plaintext on loopback, where
// the token never leaves the machine. Over the network, GRPC_CLIENT_TLS protects it.
func (b bearerToken) RequireTransportSecurity() bool { return false }

// dialAdmin connects to the admin port's ProjectionAdmin service (dialAdminConn).
func dialAdmin(cfg *service.Config) (projectionv1.ProjectionAdminClient, func(), error) {
	conn, err := dialAdminConn(cfg)
	if err != nil {
		return nil, nil, err
	}
	return projectionv1.NewProjectionAdminClient(conn), func() { _ = conn.Close() }, nil
}

// dialOperations connects to the admin port's Operations service (dialAdminConn).
func dialOperations(cfg *service.Config) (operationsv1.OperationsClient, func(), error) {
	conn, err := dialAdminConn(cfg)
	if err != nil {
		return nil, nil, err
	}
	return operationsv1.NewOperationsClient(conn), func() { _ = conn.Close() }, nil
}

// dialTarget turns a listen address into one a client can dial: a server listening on
// ":9090" or "0.0.0.0:9090" is reached on loopback from the same machine.
func dialTarget(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port), nil
}

// adminError turns a call's status into the one line an operator needs: why, and what to do.
func adminError(addr, action string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", action, err)
	}
	msg := oneLine(st.Message())
	switch st.Code() {
	case codes.Unavailable:
		switch {
		case strings.Contains(msg, "tls:") || strings.Contains(msg, "x509:") || strings.Contains(msg, "authentication handshake failed"):
			return fmt.Errorf("%s: TLS with the gRPC admin port at GRPC_ADDR=%s failed (check GRPC_CLIENT_TLS_CA_FILE, GRPC_CLIENT_TLS_CERT_FILE/KEY_FILE, GRPC_CLIENT_TLS_SERVER_NAME): %s",
				action, addr, msg)
		case strings.Contains(msg, "server preface") || strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset by peer"):
			// A TLS server drops a plaintext client, and a mutual-TLS server a client
			// whose certificate it does not trust, before any gRPC is spoken.
			return fmt.Errorf("%s: the gRPC admin port at GRPC_ADDR=%s closed the connection: does it require TLS (GRPC_CLIENT_TLS) or a client certificate of a CA it trusts (GRPC_CLIENT_TLS_CERT_FILE)? %s",
				action, addr, msg)
		}
		if i := strings.LastIndex(msg, "dial "); i >= 0 {
			msg = strings.Trim(msg[i:], `"`)
		}
		return fmt.Errorf("cannot reach the gRPC admin port at GRPC_ADDR=%s (is 'catalog serve' running there?): %s", addr, msg)
	case codes.Unauthenticated:
		return fmt.Errorf("%s: the gRPC admin port at GRPC_ADDR=%s requires the admin token: set ADMIN_TOKEN (or ADMIN_TOKEN_FILE) to the server's token", action, addr)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: the gRPC admin port at GRPC_ADDR=%s did not answer within %s", action, addr, adminRPCTimeout)
	case codes.Unimplemented:
		return fmt.Errorf("%s: the server at GRPC_ADDR=%s does not offer it (an older version?): %s", action, addr, msg)
	case codes.FailedPrecondition:
		if info := errorInfoOf(st); info != nil && info.GetReason() == "REBUILD_ALREADY_RUNNING" {
			if id := info.GetMetadata()["rebuild_id"]; id != "" {
				return fmt.Errorf("%s: rebuild %s is already running (phase %s); follow it with 'catalog rebuild status --wait %s'",
					action, id, info.GetMetadata()["phase"], id)
			}
			return fmt.Errorf("%s: a rebuild, rollback or prune is already running; try again when it has finished", action)
		}
		return errors.New(msg)
	case codes.InvalidArgument, codes.NotFound, codes.Aborted:
		return errors.New(msg)
	}
	return fmt.Errorf("%s: %s: %s", action, st.Code(), msg)
}

func errorInfoOf(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

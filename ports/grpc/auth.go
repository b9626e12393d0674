package grpcport

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/marketplace/catalog/ports/adminauth"
)

// Authenticator admits a call by the value of its "authorization" metadata;
// *adminauth.Verifier satisfies it. Declared here, where it is used.
type Authenticator interface {
	// CheckAuthorization returns an error when value does not carry the admin token.
	CheckAuthorization(value string) error
}

// openMethod reports whether a method is served without the admin token: the health service
// (load balancers and orchestrators probe it without credentials) and reflection (it only
// describes the API). Every other service, including any added later, requires the token.
func openMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(fullMethod, "/grpc.reflection.")
}

// authorize checks the admin token of a call when the server has an Authenticator. The
// status says only that authentication is required: nothing about the token that was sent.
func (s *Server) authorize(ctx context.Context, fullMethod string) error {
	if s.auth == nil || openMethod(fullMethod) {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get(adminauth.Header)
	if len(values) != 1 || s.auth.CheckAuthorization(values[0]) != nil {
		return status.Error(codes.Unauthenticated, adminauth.ErrUnauthenticated.Error())
	}
	return nil
}

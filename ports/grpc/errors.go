package grpcport

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of this service's errors: reasons are
// unique within it, so clients match (domain, reason), never the message.
const ErrorDomain = "catalog.projection.v1"

// ErrorInfo reasons. They are part of the API (documented in the .proto); clients such as
// `catalog rebuild` branch on them, so they never change once published.
const (
	// ReasonAlreadyRunning: another rebuild holds the cluster-wide lock. Retrying later is
	// correct; the metadata names the running rebuild when it is known.
	ReasonAlreadyRunning = "REBUILD_ALREADY_RUNNING"
	// ReasonNotFound: no rebuild has the id (NOT_FOUND); the metadata's rebuild_id is the id
	// asked for, empty when the newest was asked for and no rebuild ever ran.
	ReasonNotFound = "REBUILD_NOT_FOUND"
	// ReasonFinished: the rebuild has already ended (cancel of a finished rebuild).
	ReasonFinished = "REBUILD_FINISHED"
	// ReasonNoPreviousIndex: a rollback has no older index to go back to.
	ReasonNoPreviousIndex = "NO_PREVIOUS_INDEX"
	// ReasonNoAlias: the alias does not exist, so there is nothing to roll back.
	ReasonNoAlias = "NO_ALIAS"
	// ReasonValidationFailed: the new index did not match the source; the alias is untouched.
	ReasonValidationFailed = "VALIDATION_FAILED"
	// ReasonAliasMoved: the alias moved concurrently; the switch was not made.
	ReasonAliasMoved = "ALIAS_MOVED"
	// ReasonLockLost: the operation lost the cluster-wide lock before it moved the alias,
	// and stopped; retrying is correct.
	ReasonLockLost = "LOCK_LOST"
	// ReasonRollbackMappingOutdated: the previous index has an older mapping than the
	// server writes; it cannot be brought up to date, so the rollback is refused.
	ReasonRollbackMappingOutdated = "ROLLBACK_MAPPING_OUTDATED"
	// ReasonRollbackPositionUnknown: nobody recorded where the previous index stopped
	// receiving events; the rollback is refused.
	ReasonRollbackPositionUnknown = "ROLLBACK_POSITION_UNKNOWN"
	// ReasonRollbackNotRetained: the events the previous index misses are past the event
	// log's retention; the rollback is refused.
	ReasonRollbackNotRetained = "ROLLBACK_EVENTS_NOT_RETAINED"
)

// internalMessage is all a client learns about an unexpected failure: causes can carry
// hostnames, SQL or credentials in URLs. The cause is logged with the method instead.
const internalMessage = "internal error; the cause is in the server log"

// mapError turns an application error into a status error. It is the one place that knows
// which domain error means which code. internal reports whether err was unexpected, so the
// caller logs its cause. Errors that already are status errors (made by a handler) pass
// through unchanged.
func mapError(err error) (_ error, internal bool) {
	if err == nil {
		return nil, false
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err, false
	}
	switch {
	case errors.Is(err, readmodel.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error()), false
	case errors.Is(err, readmodel.ErrAlreadyRunning):
		return withReason(codes.FailedPrecondition, err.Error(), ReasonAlreadyRunning, nil), false
	case errors.Is(err, readmodel.ErrNotFound):
		// The chain names the layers it passed (store, query), none of the client's business.
		return withReason(codes.NotFound, "rebuild not found", ReasonNotFound, nil), false
	case errors.Is(err, readmodel.ErrFinished):
		return withReason(codes.FailedPrecondition, err.Error(), ReasonFinished, nil), false
	case errors.Is(err, rebuild.ErrNoPreviousIndex):
		return withReason(codes.FailedPrecondition, err.Error(), ReasonNoPreviousIndex, nil), false
	case errors.Is(err, rebuild.ErrNoAlias):
		return withReason(codes.FailedPrecondition, err.Error(), ReasonNoAlias, nil), false
	case errors.Is(err, readmodel.ErrValidation):
		return withReason(codes.FailedPrecondition, err.Error(), ReasonValidationFailed, nil), false
	case errors.Is(err, rebuild.ErrRollbackMappingOutdated):
		return withReason(codes.FailedPrecondition, err.Error(), ReasonRollbackMappingOutdated, nil), false
	case errors.Is(err, rebuild.ErrRollbackPositionUnknown):
		return withReason(codes.FailedPrecondition, err.Error(), ReasonRollbackPositionUnknown, nil), false
	case errors.Is(err, rebuild.ErrRollbackNotRetained):
		return withReason(codes.FailedPrecondition, err.Error(), ReasonRollbackNotRetained, nil), false
	case errors.Is(err, readmodel.ErrLockLost):
		return withReason(codes.Aborted, err.Error(), ReasonLockLost, nil), false
	case errors.Is(err, readmodel.ErrAliasMoved):
		// A lost race, not a state the caller must fix first: ABORTED says "re-read, retry".
		return withReason(codes.Aborted, err.Error(), ReasonAliasMoved, nil), false
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request cancelled"), false
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded"), false
	}
	return status.Error(codes.Internal, internalMessage), true
}

// rebuildNotFound is NOT_FOUND for a request that named id: the message says what was asked,
// never the server's error chain.
func rebuildNotFound(id string) error {
	msg := fmt.Sprintf("no rebuild has id %q", id)
	if id == "" {
		msg = "no rebuild has run yet"
	}
	return withReason(codes.NotFound, msg, ReasonNotFound, map[string]string{"rebuild_id": id})
}

// withReason builds a status with a google.rpc.ErrorInfo detail, so clients can tell apart
// the several FAILED_PRECONDITION cases without parsing messages.
func withReason(code codes.Code, msg, reason string, metadata map[string]string) error {
	st := status.New(code, msg)
	withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: metadata})
	if err != nil {
		// Only a detail that cannot be marshalled fails here; the code alone still tells
		// the client the essential thing.
		return st.Err()
	}
	return withInfo.Err()
}

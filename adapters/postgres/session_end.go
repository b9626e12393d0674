package postgres

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/jackc/pgx/v5/pgconn"
)

// sessionEnded reports whether err says that the database session, or the context of the
// work on it, ended: a clean shutdown cancels the context, and PostgreSQL ends a session on
// pg_terminate_backend, a restart or a failover (SQLSTATE class 57, operator intervention;
// class 08, connection exception). The server rolls back whatever the session had open, so
// nothing is left to clean up and nothing is lost; the pool opens a new session.
func sessionEnded(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "57") || strings.HasPrefix(pgErr.Code, "08")
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		pgconn.Timeout(err)
}

// sessionEndLogger is the Watermill logger of the relay's lanes (routers and forwarders).
// A clean shutdown cancels the context of the work in progress, and PostgreSQL ending a
// session fails what ran on it; Watermill (and watermill-sql's subscriber, where one is used)
// logs such failures at ERROR, though neither is a fault: the server ended the transaction
// with the session, and the lane reports its own failure and takes its lane again. Such
// entries, recognised by the error or the "query_err" field watermill-sql attaches, go out at
// DEBUG; every other entry passes unchanged.
type sessionEndLogger struct{ watermill.LoggerAdapter }

// Error logs at DEBUG when err or the failed query's error says the session or its context
// ended, at ERROR otherwise.
func (l sessionEndLogger) Error(msg string, err error, fields watermill.LogFields) {
	cause, _ := fields["query_err"].(error)
	if sessionEnded(err) || sessionEnded(cause) {
		l.Debug(msg, fields.Add(watermill.LogFields{"err": err}))
		return
	}
	l.LoggerAdapter.Error(msg, err, fields)
}

// With keeps the filter on loggers derived from this one (the subscriber derives one per
// topic).
func (l sessionEndLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return sessionEndLogger{l.LoggerAdapter.With(fields)}
}

package ops

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/marketplace/catalog/application/rebuild"
	"github.com/marketplace/catalog/domain/readmodel"
)

// Severity says whether a problem makes the service unhealthy.
type Severity int

// Severities, in increasing order.
const (
	// SeverityWarning needs attention but does not make the service unhealthy.
	SeverityWarning Severity = iota + 1
	// SeverityError makes the service unhealthy.
	SeverityError
)

// String returns "warning" or "error".
func (s Severity) String() string {
	switch s {
	case SeverityWarning:
		return "warning"
	case SeverityError:
		return "error"
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// Checks: stable names of the health rules, which alerts and scripts match.
const (
	// CheckOutboxAge: the oldest unrelayed event is older than the limit.
	CheckOutboxAge = "outbox_age"
	// CheckProjectorLag: the projector's group is further behind than the limit.
	CheckProjectorLag = "projector_lag"
	// CheckProjectorNoOffsets: the group committed nothing although the topic has records.
	CheckProjectorNoOffsets = "projector_no_offsets"
	// CheckProjectorNoMembers: no projector is in the group (warning).
	CheckProjectorNoMembers = "projector_no_members"
	// CheckProjectorStalled: a partition's committed offset has not moved for longer than
	// the limit while records wait behind it.
	CheckProjectorStalled = "projector_partition_stalled"
	// CheckAliasMissing: the alias does not exist; searches fail.
	CheckAliasMissing = "alias_missing"
	// CheckAliasForeign: the alias points at an index that is not one of its versioned
	// indices (warning).
	CheckAliasForeign = "alias_foreign_index"
	// CheckAliasBehind: the alias points at an index that misses events of the event log
	// (a rollback's or rebuild's catch-up after the switch has not finished), so searches
	// may serve stale or deleted products.
	CheckAliasBehind = "alias_index_behind"
	// CheckMappingOutdated: the live index's mapping is older than the code's; rebuild.
	CheckMappingOutdated = "mapping_outdated"
	// CheckMappingAhead: the live index's mapping is newer than the code's (an older binary
	// runs; warning).
	CheckMappingAhead = "mapping_ahead"
	// CheckCountDrift: live documents and live products differ by more than allowed.
	CheckCountDrift = "count_drift"
	// CheckDLQ: the dead-letter topic holds messages nobody has replayed or resolved.
	CheckDLQ = "dlq_unhandled"
	// CheckLongTransaction: a database transaction is open for longer than the limit.
	CheckLongTransaction = "long_transaction"
	// CheckRelayHeldBack: a transaction holding a transaction id (in the catalog's database,
	// or a prepared one) is older than the outbox age limit, so every event committed since
	// it began waits for it: the relay's latency budget is already spent.
	CheckRelayHeldBack = "relay_held_back"
	// CheckRebuildFailed: the last rebuild failed (warning).
	CheckRebuildFailed = "rebuild_failed"
	// CheckUnavailable: a source could not be read, so its health is unknown.
	CheckUnavailable = "unavailable"
)

// Problem is one finding of Status.
type Problem struct {
	// Severity says whether it makes the service unhealthy.
	Severity Severity
	// Check is the rule's stable name (Check* constants).
	Check string
	// Message says what is wrong and what to do, in one line.
	Message string
}

// addProblem records one finding of a status.
type addProblem func(sev Severity, check, format string, args ...any)

// sourceUnavailable records that a source of a status could not be read.
type sourceUnavailable func(what string, err error)

// evaluate applies the health rules to st, filling Counts, Problems and Healthy. Each rule
// looks at one part of the pipeline; the problems are listed errors first, otherwise in the
// order of the rules.
func evaluate(st *Status) {
	add := func(sev Severity, check, format string, args ...any) {
		st.Problems = append(st.Problems, Problem{Severity: sev, Check: check, Message: fmt.Sprintf(format, args...)})
	}
	unavailable := func(what string, err error) {
		add(SeverityError, CheckUnavailable, "%s: cannot be read, so its health is unknown: %v", what, err)
	}
	for _, rule := range []func(*Status, addProblem, sourceUnavailable){
		evaluateOutbox, evaluateProjector, evaluateReadModel, evaluateCounts, evaluateDLQ, evaluateTransactions, evaluateClusters, evaluateRebuild,
	} {
		rule(st, add, unavailable)
	}
	slices.SortStableFunc(st.Problems, func(a, b Problem) int { return cmp.Compare(b.Severity, a.Severity) })
	st.Healthy = !slices.ContainsFunc(st.Problems, func(p Problem) bool { return p.Severity >= SeverityError })
}

// evaluateOutbox judges the relay's backlog and names what holds it back.
func evaluateOutbox(st *Status, add addProblem, unavailable sourceUnavailable) {
	th := st.Thresholds
	if o := st.Outbox; o.Err != nil {
		unavailable("outbox", o.Err)
	} else if o.Backlog > 0 && o.OldestAge > th.MaxOutboxAge {
		cause := "; is a relay running ('catalog relay' or 'catalog serve')?"
		if o.HeldBack > 0 && o.HeldBackAge > th.MaxOutboxAge {
			// Something older is open; if no listed transaction is, this role cannot see it.
			cause = fmt.Sprintf("; %d of them wait behind open transaction id %s, which this database role cannot see: "+
				"grant it pg_read_all_stats to name it, or look it up as a superuser in pg_stat_activity (backend_xid) or pg_prepared_xacts",
				o.HeldBack, orUnknown(o.OldestRunningTransactionID))
		}
		for _, tx := range st.Transactions.Long {
			if tx.HoldsBackOutbox && tx.Age >= o.OldestAge {
				who := fmt.Sprintf("the open transaction of pid %d", tx.PID)
				if tx.PreparedGID != "" {
					who = fmt.Sprintf("prepared transaction %q", tx.PreparedGID)
				}
				cause = fmt.Sprintf("; held back by %s (open for %s): the relay cannot pass it", who, round(tx.Age))
				break
			}
		}
		add(SeverityError, CheckOutboxAge, "outbox: %d events not relayed, the oldest waiting for %s (limit %s)%s",
			o.Backlog, round(o.OldestAge), round(th.MaxOutboxAge), cause)
	}
}

// evaluateProjector judges the projector group: offsets, lag, stalled partitions, members.
func evaluateProjector(st *Status, add addProblem, unavailable sourceUnavailable) {
	th := st.Thresholds
	if p := st.Projector; p.Err != nil {
		unavailable("projector lag of group "+p.Group, p.Err)
	} else {
		switch {
		case !p.Committed && p.Records > 0:
			add(SeverityError, CheckProjectorNoOffsets, "projector: group %s has committed no offsets on %s, which holds %d records: the projector never ran or cannot commit",
				p.Group, p.Topic, p.Records)
		case p.Lag > th.MaxLag:
			add(SeverityError, CheckProjectorLag, "projector: group %s is %d events behind on %s (limit %d)", p.Group, p.Lag, p.Topic, th.MaxLag)
		}
		var stalled []string
		for _, pl := range p.Partitions {
			if pl.StalledFor > th.MaxStall {
				committed := "none"
				if pl.Committed >= 0 {
					committed = strconv.FormatInt(pl.Committed, 10)
				}
				stalled = append(stalled, fmt.Sprintf("partition %d for %s (committed %s, end %d, %d waiting)",
					pl.Partition, round(pl.StalledFor), committed, pl.End, pl.Lag))
			}
		}
		if len(stalled) > 0 {
			add(SeverityError, CheckProjectorStalled, "projector: group %s has not moved its committed offset on %s %s (limit %s) while events wait: "+
				"a projector is stuck on a message (its log says why: search unreachable, a dead letter that cannot be published) or the partition has no live owner",
				p.Group, p.Topic, strings.Join(stalled, "; "), round(th.MaxStall))
		}
		if p.Members == 0 {
			add(SeverityWarning, CheckProjectorNoMembers, "projector: no consumer is in group %s (state %s); events are not being projected", p.Group, orUnknown(p.State))
		}
	}
}

// evaluateReadModel judges the alias, the mapping of its index, and whether that index is behind the event log.
func evaluateReadModel(st *Status, add addProblem, unavailable sourceUnavailable) {
	rm := st.ReadModel
	switch {
	case rm.Err != nil:
		unavailable("read model", rm.Err)
	case !rm.AliasExists:
		add(SeverityError, CheckAliasMissing, "read model: alias %s does not exist, so searches fail; run 'catalog rebuild'", rm.Alias)
	case !rm.IndexKnown:
		add(SeverityWarning, CheckAliasForeign, "read model: alias %s points at %s, which is not one of its versioned indices; its mapping and counts are unknown", rm.Alias, rm.Index)
	case rm.IndexMappingVersion < rm.CodeMappingVersion:
		add(SeverityError, CheckMappingOutdated, "read model: index %s has mapping v%d but the code has v%d; run 'catalog rebuild'", rm.Index, rm.IndexMappingVersion, rm.CodeMappingVersion)
	case rm.IndexMappingVersion > rm.CodeMappingVersion:
		add(SeverityWarning, CheckMappingAhead, "read model: index %s has mapping v%d, newer than the code's v%d (an older binary is running?)", rm.Index, rm.IndexMappingVersion, rm.CodeMappingVersion)
	}

	if rm.Err == nil && rm.Behind {
		missing := ""
		st.ReadModel.BehindEvents = -1
		if n, ok := eventsAfter(rm.CompleteBefore, st.Projector); ok {
			missing = fmt.Sprintf(" (%d events)", n)
			st.ReadModel.BehindEvents = n
		}
		add(SeverityError, CheckAliasBehind, "read model: alias %s points at %s, which misses the events after offsets %s%s: searches may return stale or deleted products. "+
			"A rollback or rebuild did not finish catching it up; recovery on a serving replica retries it within seconds ('catalog rebuild status' and the logs say why it cannot); if it stays behind, run 'catalog rebuild'",
			rm.Alias, rm.Index, rebuild.Offsets(rm.CompleteBefore), missing)
	}
}

// evaluateCounts compares live documents with live products, filling st.Counts.
func evaluateCounts(st *Status, add addProblem, unavailable sourceUnavailable) {
	th := st.Thresholds
	rm := st.ReadModel
	if st.Products.Err != nil {
		unavailable("product counts", st.Products.Err)
	} else if rm.Err == nil && rm.AliasExists && rm.IndexKnown {
		drift := rm.LiveDocuments - st.Products.Live
		if drift < 0 {
			drift = -drift
		}
		st.Counts = CountComparison{Compared: true, Drift: drift, Allowed: th.AllowedDrift(st.Products.Live)}
		if drift > st.Counts.Allowed {
			add(SeverityError, CheckCountDrift, "read model: %s holds %d live documents but the database %d live products (drift %d, allowed %d); 'catalog verify' lists the differences",
				rm.Index, rm.LiveDocuments, st.Products.Live, drift, st.Counts.Allowed)
		}
	}
}

// evaluateDLQ judges the dead letters nobody has handled.
func evaluateDLQ(st *Status, add addProblem, unavailable sourceUnavailable) {
	if d := st.DLQ; d.Err != nil {
		unavailable("dead-letter topic "+d.Topic, d.Err)
	} else if d.Unhandled > 0 {
		add(SeverityError, CheckDLQ, "dlq: %d of the %d messages in %s are unhandled: replay them once the cause is fixed, or resolve those to drop ('catalog dlq list', 'catalog dlq replay', 'catalog dlq resolve'); nothing is replayed automatically",
			d.Unhandled, d.Depth, d.Topic)
	}
}

// evaluateTransactions judges the long database transactions.
func evaluateTransactions(st *Status, add addProblem, unavailable sourceUnavailable) {
	th := st.Thresholds
	if st.Transactions.Err != nil {
		unavailable("database transactions", st.Transactions.Err)
	}
	for _, tx := range st.Transactions.Long {
		switch {
		case tx.HoldsBackOutbox && tx.Age >= th.MaxOutboxAge:
			add(SeverityError, CheckRelayHeldBack, "database: %s has been open for %s (outbox age limit %s) and holds a transaction id, "+
				"so the relay cannot pass it: every event committed since it began waits, whichever database of the cluster it runs in; %s",
				describeTx(tx), round(tx.Age), round(th.MaxOutboxAge), endTx(tx))
		case tx.Age >= th.MaxTxAge:
			effect := "it holds back vacuum"
			if tx.HoldsBackOutbox {
				effect = "it holds a transaction id, so the relay cannot pass it: events committed since it began wait"
			}
			add(SeverityError, CheckLongTransaction, "database: %s open for %s (limit %s); %s; %s",
				describeTx(tx), round(tx.Age), round(th.MaxTxAge), effect, endTx(tx))
		}
	}
}

// evaluateRebuild reports the last rebuild when it failed.
func evaluateRebuild(st *Status, add addProblem, unavailable sourceUnavailable) {
	if r := st.Rebuild; r.Err != nil {
		add(SeverityWarning, CheckUnavailable, "rebuilds: the last rebuild cannot be read: %v", r.Err)
	} else if r.Last != nil && r.Last.Phase == readmodel.PhaseFailed {
		add(SeverityWarning, CheckRebuildFailed, "rebuild: the last rebuild %s failed: %s", r.Last.ID, r.Last.Error)
	}
}

// eventsAfter counts the events of the projector's partitions from pos to their end; ok is
// false when the partitions could not be read.
func eventsAfter(pos map[int32]int64, p ProjectorSection) (n int64, ok bool) {
	if p.Err != nil || len(p.Partitions) == 0 {
		return 0, false
	}
	for _, pl := range p.Partitions {
		n += max(pl.End-max(pos[pl.Partition], pl.Start), 0)
	}
	return n, true
}

// describeTx names a transaction for a message: who, where, since when; never its SQL.
func describeTx(tx LongTransaction) string {
	started := "started " + tx.Started.UTC().Format(time.RFC3339)
	if tx.PreparedGID != "" {
		return fmt.Sprintf("prepared transaction %q (%s@%s, prepared %s)", tx.PreparedGID, orUnknown(tx.User), orUnknown(tx.Database),
			tx.Started.UTC().Format(time.RFC3339))
	}
	last := ""
	if !tx.QueryStarted.IsZero() {
		last = ", last statement " + tx.QueryStarted.UTC().Format(time.RFC3339)
	}
	app := ""
	if tx.Application != "" {
		app = fmt.Sprintf(", application %q", tx.Application)
	}
	return fmt.Sprintf("transaction of pid %d (%s@%s%s, %s, %s%s)", tx.PID, orUnknown(tx.User), orUnknown(tx.Database), app,
		orUnknown(tx.State), started, last)
}

// endTx says how an operator ends tx.
func endTx(tx LongTransaction) string {
	if tx.PreparedGID != "" {
		return fmt.Sprintf("finish it with COMMIT PREPARED or ROLLBACK PREPARED '%s' once its coordinator is known to be gone", tx.PreparedGID)
	}
	return fmt.Sprintf("end it (SELECT pg_terminate_backend(%d)) or fix its client", tx.PID)
}

// round shortens a duration for a message: whole seconds from a second on, milliseconds below.
func round(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

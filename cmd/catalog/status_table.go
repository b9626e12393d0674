package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	operationsv1 "github.com/marketplace/catalog/api/gen/catalog/operations/v1"
)

// The status for a person: one block per part, figures first, the problems last, where the
// eye ends up. Each block has its own writer below, in the order the table prints them; a
// part that could not be read says so on its one line instead of its figures.

// statusTimeLayout is how the status shows a moment in a sentence (a table column says UTC in
// its header and uses timeLayout).
const statusTimeLayout = timeLayout + " MST"

// writeStatusTable prints the status for a person.
func writeStatusTable(w io.Writer, st *operationsv1.GetStatusResponse) error {
	var b strings.Builder
	th := st.GetThresholds()
	writeStatusHeadline(&b, st)
	writeOutboxStatus(&b, st.GetOutbox(), th)
	writeProjectorStatus(&b, st.GetProjector(), th)
	writeReadModelStatus(&b, st.GetReadModel())
	writeProductsStatus(&b, st.GetProducts(), st.GetReadModel())
	writeDLQStatus(&b, st.GetDlq())
	writeLastRebuildStatus(&b, st.GetLastRebuild())
	writeTransactionsStatus(&b, st.GetTransactions(), th, st.GetCheckedAt().AsTime())
	writeKafkaStatus(&b, st.GetKafka())
	writeSearchStatus(&b, st.GetSearchCluster())
	writeProblems(&b, st.GetProblems())
	_, err := io.WriteString(w, b.String())
	return err
}

// writeStatusHeadline prints the verdict and how many errors and warnings led to it.
func writeStatusHeadline(b *strings.Builder, st *operationsv1.GetStatusResponse) {
	errs, warns := 0, 0
	for _, p := range st.GetProblems() {
		if p.GetSeverity() == operationsv1.Severity_SEVERITY_ERROR {
			errs++
		} else {
			warns++
		}
	}
	verdict := "HEALTHY"
	if !st.GetHealthy() {
		verdict = "UNHEALTHY"
	}
	fmt.Fprintf(b, "catalog status at %s: %s (%d %s, %d %s)\n\n", st.GetCheckedAt().AsTime().UTC().Format(statusTimeLayout),
		verdict, errs, plural(errs, "error", "errors"), warns, plural(warns, "warning", "warnings"))
}

// writeOutboxStatus prints the backlog of the outbox and, per lane, where the relay stands.
func writeOutboxStatus(b *strings.Builder, o *operationsv1.OutboxStatus, th *operationsv1.Thresholds) {
	if o.GetReadError() != "" {
		fmt.Fprintf(b, "OUTBOX        unavailable: %s\n", oneLine(o.GetReadError()))
		return
	}
	oldest := "none waiting"
	if o.GetOldestAge() != nil {
		oldest = "oldest waiting " + shortDuration(o.GetOldestAge().AsDuration())
	}
	fmt.Fprintf(b, "OUTBOX        %s events not relayed, %s (limit %s); table %s\n", groupDigits(o.GetBacklog()), oldest,
		shortDuration(th.GetMaxOutboxAge().AsDuration()), byteSize(o.GetTableBytes()))
	rows := [][]string{{"LANE", "BACKLOG", "OLDEST", "RELAYED TX", "RELAYED OFFSET", "RELAYED AT (UTC)"}}
	for _, l := range o.GetLanes() {
		rows = append(rows, outboxLaneRow(l))
	}
	writeTable(b, "  ", rows, 0b111110)
}

// outboxLaneRow is one lane's row: "-" where the lane has nothing waiting or the relay has
// not moved it yet.
func outboxLaneRow(l *operationsv1.OutboxLane) []string {
	age, tx, off, at := "-", "-", "-", "-"
	if l.GetOldestAge() != nil {
		age = shortDuration(l.GetOldestAge().AsDuration())
	}
	if l.GetRelayStarted() {
		tx, off = l.GetRelayedTransactionId(), strconv.FormatInt(l.GetRelayedOffset(), 10)
		if l.GetRelayedAt() != nil {
			at = l.GetRelayedAt().AsTime().UTC().Format(timeLayout)
		}
	}
	return []string{strconv.Itoa(int(l.GetLane())), groupDigits(l.GetBacklog()), age, tx, off, at}
}

// writeProjectorStatus prints the projector group's lag and, per partition, its offsets and
// how long its committed offset has stood still.
func writeProjectorStatus(b *strings.Builder, p *operationsv1.ProjectorStatus, th *operationsv1.Thresholds) {
	if p.GetReadError() != "" {
		fmt.Fprintf(b, "PROJECTOR     group %s on %s unavailable: %s\n", p.GetGroup(), p.GetTopic(), oneLine(p.GetReadError()))
		return
	}
	committed := ""
	if !p.GetHasCommittedOffsets() {
		committed = ", nothing committed"
	}
	fmt.Fprintf(b, "PROJECTOR     group %s on %s: lag %s (limit %s), %d %s, state %s%s\n", p.GetGroup(), p.GetTopic(),
		groupDigits(p.GetTotalLag()), groupDigits(th.GetMaxLag()), p.GetMembers(), plural(int(p.GetMembers()), "member", "members"),
		orDash(p.GetState()), committed)
	rows := [][]string{{"PARTITION", "START", "END", "COMMITTED", "LAG", "STALLED"}}
	for _, pl := range p.GetPartitions() {
		rows = append(rows, partitionLagRow(pl, th.GetMaxStall().AsDuration()))
	}
	writeTable(b, "  ", rows, 0b011111)
}

// partitionLagRow is one partition's row; a stall longer than maxStall is marked.
func partitionLagRow(pl *operationsv1.PartitionLag, maxStall time.Duration) []string {
	c, stalled := "-", "-"
	if pl.GetCommittedOffset() >= 0 {
		c = groupDigits(pl.GetCommittedOffset())
	}
	if d := pl.GetStalledFor().AsDuration(); d > 0 {
		stalled = shortDuration(d)
		if d > maxStall {
			stalled += " (STALLED)"
		}
	}
	return []string{strconv.Itoa(int(pl.GetPartition())), groupDigits(pl.GetStartOffset()),
		groupDigits(pl.GetEndOffset()), c, groupDigits(pl.GetLag()), stalled}
}

// writeReadModelStatus prints where the alias points and whether that index misses events.
func writeReadModelStatus(b *strings.Builder, rm *operationsv1.ReadModelStatus) {
	switch {
	case rm.GetReadError() != "":
		fmt.Fprintf(b, "READ MODEL    alias %s unavailable: %s\n", rm.GetAlias(), oneLine(rm.GetReadError()))
	case !rm.GetAliasExists():
		fmt.Fprintf(b, "READ MODEL    alias %s DOES NOT EXIST (%d versioned %s)\n", rm.GetAlias(), rm.GetIndices(), plural(int(rm.GetIndices()), "index", "indices"))
	case !rm.GetIndexKnown():
		fmt.Fprintf(b, "READ MODEL    alias %s -> %s (not one of its versioned indices; code mapping v%d)\n", rm.GetAlias(), rm.GetIndex(), rm.GetCodeMappingVersion())
	default:
		fmt.Fprintf(b, "READ MODEL    alias %s -> %s (mapping v%d, code v%d; %d %s)\n", rm.GetAlias(), rm.GetIndex(),
			rm.GetIndexMappingVersion(), rm.GetCodeMappingVersion(), rm.GetIndices(), plural(int(rm.GetIndices()), "index", "indices"))
		fmt.Fprintf(b, "              %s live documents, %s tombstones\n", groupDigits(rm.GetLiveDocuments()), groupDigits(rm.GetTombstones()))
	}
	if rm.GetIndexBehind() {
		missing := "an unknown number of events"
		if n := rm.GetIndexBehindEvents(); n >= 0 {
			missing = groupDigits(n) + " " + plural(int(min(n, 2)), "event", "events")
		}
		fmt.Fprintf(b, "              BEHIND the event log: it misses %s\n", missing)
	}
}

// writeProductsStatus prints the products in the database and, when the read model's count
// was compared with them, the drift.
func writeProductsStatus(b *strings.Builder, prod *operationsv1.ProductsStatus, rm *operationsv1.ReadModelStatus) {
	if prod.GetReadError() != "" {
		fmt.Fprintf(b, "PRODUCTS      unavailable: %s\n", oneLine(prod.GetReadError()))
		return
	}
	drift := ""
	if rm.GetCountCompared() {
		drift = fmt.Sprintf("; drift %s (allowed %s)", groupDigits(rm.GetCountDrift()), groupDigits(rm.GetAllowedCountDrift()))
	}
	fmt.Fprintf(b, "PRODUCTS      %s live, %s with tombstones%s\n", groupDigits(prod.GetLive()), groupDigits(prod.GetTotal()), drift)
}

// writeDLQStatus prints the dead letters nobody has handled yet, of all retained.
func writeDLQStatus(b *strings.Builder, d *operationsv1.DeadLetterStatus) {
	if d.GetReadError() != "" {
		fmt.Fprintf(b, "DLQ           %s unavailable: %s\n", d.GetTopic(), oneLine(d.GetReadError()))
		return
	}
	fmt.Fprintf(b, "DLQ           %s: %s unhandled of %s retained %s (%s replayed or resolved)\n", d.GetTopic(), groupDigits(d.GetUnhandled()),
		groupDigits(d.GetDepth()), plural(int(min(d.GetDepth(), 2)), "message", "messages"), groupDigits(d.GetHandled()))
}

// writeLastRebuildStatus prints the last rebuild's phase, when it started or finished, and
// why it failed.
func writeLastRebuildStatus(b *strings.Builder, lr *operationsv1.LastRebuildStatus) {
	switch {
	case lr.GetReadError() != "":
		fmt.Fprintf(b, "LAST REBUILD  unavailable: %s\n", oneLine(lr.GetReadError()))
	case !lr.GetFound():
		fmt.Fprintf(b, "LAST REBUILD  none\n")
	default:
		when := "running since " + lr.GetStartedAt().AsTime().UTC().Format(statusTimeLayout)
		if lr.GetFinishedAt() != nil {
			when = "finished " + lr.GetFinishedAt().AsTime().UTC().Format(statusTimeLayout)
		}
		fmt.Fprintf(b, "LAST REBUILD  %s %s, %s (%s -> %s)\n", lr.GetId(), lr.GetPhase(), when, orDash(lr.GetFromIndex()), orDash(lr.GetToIndex()))
		if lr.GetError() != "" {
			fmt.Fprintf(b, "              error: %s\n", oneLine(lr.GetError()))
		}
	}
}

// writeTransactionsStatus prints the long-running transactions, or the limits none exceeds;
// checkedAt dates their last statements.
func writeTransactionsStatus(b *strings.Builder, tx *operationsv1.TransactionsStatus, th *operationsv1.Thresholds, checkedAt time.Time) {
	switch {
	case tx.GetReadError() != "":
		fmt.Fprintf(b, "TRANSACTIONS  unavailable: %s\n", oneLine(tx.GetReadError()))
	case len(tx.GetLong()) == 0:
		fmt.Fprintf(b, "TRANSACTIONS  none holding the relay back for longer than %s, none open longer than %s\n",
			shortDuration(th.GetMaxOutboxAge().AsDuration()), shortDuration(th.GetMaxTxAge().AsDuration()))
	default:
		fmt.Fprintf(b, "TRANSACTIONS  %d long-running\n", len(tx.GetLong()))
		rows := [][]string{{"PID", "AGE", "HOLDS RELAY", "STATE", "USER@DATABASE", "APPLICATION", "LAST STATEMENT"}}
		for _, t := range tx.GetLong() {
			rows = append(rows, longTransactionRow(t, checkedAt))
		}
		writeTable(b, "  ", rows, 0b000011)
	}
}

// longTransactionRow is one transaction's row; a prepared one has no backend (pid "-") and
// shows its global id where a session shows its application.
func longTransactionRow(t *operationsv1.LongTransaction, checkedAt time.Time) []string {
	holds := "no"
	if t.GetHoldsBackOutbox() {
		holds = "YES"
	}
	pid, app := strconv.Itoa(int(t.GetPid())), t.GetApplication()
	if t.GetPreparedGid() != "" {
		pid, app = "-", "prepared "+strconv.Quote(t.GetPreparedGid())
	}
	last := "-"
	if qs := t.GetQueryStartedAt(); qs != nil {
		last = shortDuration(checkedAt.Sub(qs.AsTime())) + " ago"
	}
	return []string{pid, shortDuration(t.GetAge().AsDuration()), holds, t.GetState(),
		t.GetUser() + "@" + t.GetDatabase(), truncate(app, 40), last}
}

// writeKafkaStatus prints the live brokers and the replication of the topics; nothing when
// the answering process did not report on Kafka.
func writeKafkaStatus(b *strings.Builder, k *operationsv1.KafkaStatus) {
	switch {
	case k.GetReadError() != "":
		fmt.Fprintf(b, "KAFKA         unavailable: %s\n", oneLine(k.GetReadError()))
	case k.GetReported():
		fmt.Fprintf(b, "KAFKA         %d live %s\n", k.GetBrokers(), plural(int(k.GetBrokers()), "broker", "brokers"))
		rows := [][]string{{"TOPIC", "PARTITIONS", "RF", "MIN ISR", "UNDER-REPLICATED", "BELOW MIN ISR", "OFFLINE"}}
		for _, t := range k.GetTopics() {
			rows = append(rows, []string{t.GetTopic(), strconv.Itoa(int(t.GetPartitions())), strconv.Itoa(int(t.GetReplicationFactor())),
				strconv.Itoa(int(t.GetMinInsyncReplicas())), partitionsCell(t.GetUnderReplicated()), partitionsCell(t.GetBelowMinIsr()),
				partitionsCell(t.GetOffline())})
		}
		writeTable(b, "  ", rows, 0b0001110)
	}
}

// writeSearchStatus prints the search cluster's health; nothing for the embedded engine,
// which has no cluster to report.
func writeSearchStatus(b *strings.Builder, sc *operationsv1.SearchClusterStatus) {
	switch {
	case sc.GetReadError() != "":
		fmt.Fprintf(b, "SEARCH        unavailable: %s\n", oneLine(sc.GetReadError()))
	case sc.GetReported():
		fmt.Fprintf(b, "SEARCH        %s, %d %s (%d data); read model shards: %d active, %d initializing, %d relocating, %d unassigned (%d waiting for their node)\n",
			strings.ToUpper(sc.GetStatus()), sc.GetNodes(), plural(int(sc.GetNodes()), "node", "nodes"), sc.GetDataNodes(), sc.GetActiveShards(),
			sc.GetInitializingShards(), sc.GetRelocatingShards(), sc.GetUnassignedShards(), sc.GetDelayedUnassignedShards())
	}
}

// writeProblems lists the problems, errors and warnings alike, after a blank line.
func writeProblems(b *strings.Builder, problems []*operationsv1.Problem) {
	if len(problems) == 0 {
		return
	}
	b.WriteString("\nPROBLEMS\n")
	for _, p := range problems {
		fmt.Fprintf(b, "  %-7s  %-20s  %s\n", strings.ToUpper(severityLabel(p.GetSeverity())), p.GetCheck(), p.GetMessage())
	}
}

// partitionsCell lists partition numbers for a table cell: "-" for none, the count and the
// first few otherwise.
func partitionsCell(ps []int32) string {
	if len(ps) == 0 {
		return "-"
	}
	parts := make([]string, 0, 4)
	for i, p := range ps {
		if i == 4 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, strconv.Itoa(int(p)))
	}
	return fmt.Sprintf("%d (%s)", len(ps), strings.Join(parts, ","))
}

// byteSize shows a size in bytes with a binary unit: "900 B", "3.0 MiB".
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

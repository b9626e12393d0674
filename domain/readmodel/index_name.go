package readmodel

import (
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// indexTimeLayout is the time part of index names: UTC, to the second.
const indexTimeLayout = "20060102_150405"

// IndexName is the name of an index behind alias with mapping version mappingVersion created
// at t: {alias}_v{M}_{YYYYMMDD}_{HHMMSS} in UTC. Names sort by creation time within one mapping
// version, and an operator can tell from a name alone what an index holds and when it was
// made. Every read model (Elasticsearch, Bleve, memory) names its indices with it.
func IndexName(alias string, mappingVersion int, t time.Time) string {
	return fmt.Sprintf("%s_v%d_%s", alias, mappingVersion, t.UTC().Format(indexTimeLayout))
}

// ParseIndexName is the inverse of IndexName for alias; ok is false for any other name, which
// keeps index management away from indices it did not create.
func ParseIndexName(alias, name string) (mappingVersion int, created time.Time, ok bool) {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(alias) + `_v([0-9]{1,6})_([0-9]{8}_[0-9]{6})$`)
	m := re.FindStringSubmatch(name)
	if m == nil {
		return 0, time.Time{}, false
	}
	v, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, time.Time{}, false
	}
	t, err := time.ParseInLocation(indexTimeLayout, m[2], time.UTC)
	if err != nil {
		return 0, time.Time{}, false
	}
	return v, t, true
}

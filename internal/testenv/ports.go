package testenv

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// PortsEnv names the variable that, set to "LO-HI", confines the ports tests listen on and give servers to
// that range (machines where several suites share loopback ranges by agreement); unset, the
// kernel picks free ports.
const PortsEnv = "CATALOG_TEST_PORTS"

var (
	portMu   sync.Mutex
	portNext int
)

// FreePort returns a loopback port nothing listens on.
func FreePort(tb testing.TB) int {
	tb.Helper()
	lo, hi, ok, err := portRange()
	if err != nil {
		tb.Fatal(err)
	}
	if !ok {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	portMu.Lock()
	defer portMu.Unlock()
	if portNext < lo || portNext > hi {
		// Test binaries of several packages run at once: start each at its own offset.
		portNext = lo + os.Getpid()%(hi-lo+1)
	}
	for range hi - lo + 1 {
		p := portNext
		if portNext++; portNext > hi {
			portNext = lo
		}
		if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			_ = ln.Close()
			return p
		}
	}
	tb.Fatalf("no free port in %s=%d-%d", PortsEnv, lo, hi)
	return 0
}

// Addr is 127.0.0.1:FreePort.
func Addr(tb testing.TB) string {
	tb.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(tb)))
}

func portRange() (lo, hi int, ok bool, err error) {
	v := strings.TrimSpace(os.Getenv(PortsEnv))
	if v == "" {
		return 0, 0, false, nil
	}
	a, b, found := strings.Cut(v, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if !found || err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, false, fmt.Errorf("%s=%q: want LO-HI", PortsEnv, v)
	}
	return lo, hi, true, nil
}

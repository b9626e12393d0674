package main

import (
	"os"
	"testing"

	"github.com/marketplace/catalog/internal/securetest"
)

// TestMain stops the SASL_SSL broker the secured-cluster tests start once for the package.
// With CATALOG_TEST_AS_MAIN=1 the test binary is the catalog command itself, so a test can
// run it as another user (asUser) without building it again.
func TestMain(m *testing.M) {
	if os.Getenv("CATALOG_TEST_AS_MAIN") == "1" {
		main()
	}
	code := m.Run()
	securetest.StopKafka()
	os.Exit(code)
}

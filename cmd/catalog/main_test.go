package main

import (
	"os"
	"testing"

	"github.com/marketplace/catalog/internal/securetest"
)

// TestMain stops the SASL_SSL broker the secured-cluster tests start once for the package.
func TestMain(m *testing.M) {
	code := m.Run()
	securetest.StopKafka()
	os.Exit(code)
}

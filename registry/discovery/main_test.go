package discovery

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain dispatches child roles (the test binary re-run as another
// process) and checks for leaked goroutines.
func TestMain(m *testing.M) {
	if role := os.Getenv(childRoleEnv); role != "" {
		os.Exit(runChild(role))
	}
	goleak.VerifyTestMain(m)
}

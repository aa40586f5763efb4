package e2e

import (
	"os"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/tests/framework"
)

// e2e is the harness's built binary, with the scenarios of this package as
// methods.
type e2e struct{ *framework.E2E }

// newE2E skips (or fails under CI=true) without a lab, and builds the binary.
func newE2E(t *testing.T) *e2e { return &e2e{framework.NewE2E(t)} }

func TestMain(m *testing.M) {
	// Runs applied by tests go into a throwaway run index, not the user's.
	dir, err := os.MkdirTemp("", "etcd-rescue-index-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_STATE_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

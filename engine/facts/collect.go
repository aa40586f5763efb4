package facts

import (
	"context"
	"errors"
	"time"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// Options bound a collection.
type Options struct {
	// Timeout bounds each host (SSH connect, its commands and its member's
	// API calls together); hosts are asked in parallel, so the whole
	// collection takes about one Timeout.
	Timeout time.Duration
	// Inventory is the inventory path, recorded in Facts.Inventory.
	Inventory string
}

// Collect asks every host and member of inv (an inventory loaded with
// plans.LoadInventory), read-only, and returns what they said. An
// unreachable host or a silent member is a fact, not an error: the error is
// only for a collection that could not start (e.g. an unreadable identity).
func Collect(ctx context.Context, inv *plans.Plan, o Options) (*Facts, error) {
	return nil, errors.New("facts: the collector is being built (placeholder for parallel work)")
}

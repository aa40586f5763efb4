package steps

import (
	"testing"
	"time"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// Every type's default tags parse, and they are the values the steps use.
func TestRegistryDefaultTags(t *testing.T) {
	for name, typ := range Registry() {
		s := typ.New()
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: %v", name, r)
				}
			}()
			plans.SetDefaults(s)
		}()
	}
	sc := &SnapshotCopy{}
	plans.SetDefaults(sc)
	sv := &SnapshotVerify{}
	plans.SetDefaults(sv)
	if sc.To != "/var/tmp/etcd-rescue/snapshot.db" || sv.File != sc.To {
		t.Errorf("snapshot-copy to %q, snapshot-verify file %q", sc.To, sv.File)
	}
	r := &Restore{}
	plans.SetDefaults(r)
	if r.BumpRevision != "auto" || r.Margin != 1_000_000_000 {
		t.Errorf("restore %+v", r)
	}
	w, p, f := &WaitHealthy{}, &MemberPromote{}, &ForceNewCluster{}
	plans.SetDefaults(w)
	plans.SetDefaults(p)
	plans.SetDefaults(f)
	if w.Within.D() != 2*time.Minute || p.Within.D() != 5*time.Minute || f.Within.D() != 2*time.Minute {
		t.Errorf("within: wait-healthy %s, member-promote %s, force-new-cluster %s", w.Within, p.Within, f.Within)
	}
}

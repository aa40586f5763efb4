package framework

import (
	"reflect"
	"testing"
)

func TestCommandArgs(t *testing.T) {
	for _, c := range []struct {
		line string
		want []string
	}{
		{"etcd-rescue new ip-change --inventory /var/tmp/inv.yaml --from-facts -o ip-change.yaml",
			[]string{"etcd-rescue", "new", "ip-change", "--inventory", "/var/tmp/inv.yaml", "--from-facts", "-o", "ip-change.yaml"}},
		{`etcd-rescue new quorum-loss  --inventory '/tmp/a b/inv.yaml' --route "force-new-cluster"`,
			[]string{"etcd-rescue", "new", "quorum-loss", "--inventory", "/tmp/a b/inv.yaml", "--route", "force-new-cluster"}},
		{"  a ''  b\n", []string{"a", "", "b"}},
		{"", nil},
	} {
		if got := CommandArgs(c.line); !reflect.DeepEqual(got, c.want) {
			t.Errorf("CommandArgs(%q) = %q, want %q", c.line, got, c.want)
		}
	}
}

func TestPlanSteps(t *testing.T) {
	plan := []byte(`version: 1
steps:
  - {id: fence, type: stop-service, on: [etcd1, etcd3]}
  - id: survivor
    type: force-new-cluster
    on: etcd2
  - {id: check, type: check-health}
`)
	got := PlanSteps(t, plan)
	want := []PlanStep{
		{ID: "fence", Type: "stop-service", On: []string{"etcd1", "etcd3"}},
		{ID: "survivor", Type: "force-new-cluster", On: []string{"etcd2"}},
		{ID: "check", Type: "check-health"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("PlanSteps = %+v, want %+v", got, want)
	}
}

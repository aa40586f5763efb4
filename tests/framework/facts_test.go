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

// While etcd runs, its own writes (sizes and mtimes under member/, the
// WAL's *.tmp) are not compared; a change of owner, mode, file set, env
// file or unit state still is; with etcd stopped everything is.
func TestMaskEtcdWrites(t *testing.T) {
	listing := func(unit, env, dbSize, dbTime, walMode, extra string) string {
		return "etcd: " + unit + " enabled\nenv: " + env + "\n" +
			"d /var/lib/etcd etcd:etcd 700 4096 1.0\n" +
			"f /var/lib/etcd/member/snap/db etcd:etcd 600 " + dbSize + " " + dbTime + "\n" +
			"f /var/lib/etcd/member/wal/0000000000000000-0000000000000000.wal etcd:etcd " + walMode + " 64000000 2.0\n" +
			extra
	}
	base := listing("active", "abc", "1000", "5.0", "600", "")
	same := []string{
		listing("active", "abc", "2000", "6.0", "600", ""), // etcd wrote its db
		listing("active", "abc", "1000", "5.0", "600", "f /var/lib/etcd/member/wal/0.tmp etcd:etcd 600 64000000 7.0\n"),
	}
	for _, s := range same {
		if maskEtcdWrites(s) != maskEtcdWrites(base) {
			t.Errorf("etcd's own write counted as a change:\n%s\nvs\n%s", maskEtcdWrites(s), maskEtcdWrites(base))
		}
	}
	changed := []string{
		listing("inactive", "abc", "1000", "5.0", "600", ""),                                           // etcd stopped
		listing("active", "abd", "1000", "5.0", "600", ""),                                             // env file written
		listing("active", "abc", "1000", "5.0", "644", ""),                                             // chmod
		listing("active", "abc", "1000", "5.0", "600", "f /var/lib/etcd/member/x etcd:etcd 600 1 1\n"), // a new file
	}
	for _, s := range changed {
		if maskEtcdWrites(s) == maskEtcdWrites(base) {
			t.Errorf("a change not seen:\n%s", s)
		}
	}
	stopped := listing("inactive", "abc", "1000", "5.0", "600", "")
	if maskEtcdWrites(listing("inactive", "abc", "2000", "5.0", "600", "")) == maskEtcdWrites(stopped) {
		t.Error("with etcd stopped, a db of another size was not seen")
	}
}

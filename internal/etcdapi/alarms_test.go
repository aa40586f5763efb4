package etcdapi

import (
	"fmt"
	"testing"
)

func TestAlarmsIn(t *testing.T) {
	got := alarmsIn([]string{"etcdserver: no leader", "memberID:10276657743932975437 alarm:NOSPACE ", "memberID:7 alarm:CORRUPT"})
	want := []string{"NOSPACE on member 8e9e05c52164694d", "CORRUPT on member 7"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("alarmsIn = %q, want %q", got, want)
	}
	if got := alarmsIn([]string{"etcdserver: no leader"}); len(got) != 0 {
		t.Errorf("no alarm: got %q", got)
	}
}

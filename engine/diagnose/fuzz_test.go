package diagnose

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
)

// FuzzDiagnose: whatever a facts file holds (diagnose --facts FILE, or new
// --facts FILE), once it decodes, diagnosing it and printing the diagnosis
// never panic, and a recommendation always names a scenario. Seeds: every
// fixture.
func FuzzDiagnose(f *testing.F) {
	files, _ := filepath.Glob("testdata/facts/*.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fs facts.Facts
		if json.Unmarshal(b, &fs) != nil {
			return
		}
		d := Diagnose(&fs, "inv.yaml")
		if d == nil {
			t.Fatal("nil diagnosis")
		}
		if d.Recommend != nil && d.Recommend.Scenario == "" {
			t.Fatalf("a recommendation without a scenario: %+v", d.Recommend)
		}
		if err := d.WriteText(io.Discard); err != nil {
			t.Fatal(err)
		}
		if _, err := json.Marshal(d); err != nil {
			t.Fatal(err)
		}
	})
}

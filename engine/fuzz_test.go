package engine

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// FuzzParseCompile feeds arbitrary bytes through parse, checks and compile.
// Every input must end in findings or a plan, never a panic, and every
// finding must carry a position.
func FuzzParseCompile(f *testing.F) {
	files, _ := filepath.Glob("../examples/*.yaml")
	bad, _ := filepath.Glob("testdata/bad/*.yaml")
	for _, p := range append(files, bad...) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		p, fs := plans.Parse("fuzz.yaml", src)
		for _, x := range fs {
			if x.Pos.File != "fuzz.yaml" {
				t.Fatalf("finding without position: %v", x)
			}
		}
		if p == nil {
			return
		}
		p.ApplyDefaults()
		for _, x := range p.Check() {
			if x.Pos.File != "fuzz.yaml" {
				t.Fatalf("finding without position: %v", x)
			}
		}
		if p.Cluster == nil || len(p.Hosts) == 0 {
			return
		}
		c, cfs := Compile(p, registry())
		if c != nil {
			BuildDryRun(c)
		}
		for _, x := range cfs {
			if x.Pos.File != "fuzz.yaml" {
				t.Fatalf("finding without position: %v", x)
			}
		}
	})
}

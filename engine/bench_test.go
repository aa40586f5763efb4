package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkWalk applies a plan of 8 independent steps on 3 hosts (24
// step-hosts) whose remote commands each take 5 ms, with every transition
// checkpointed (fsync) as in a real run. parallelism=1 is the baseline:
// `make bench` prints the parallel speed-up against it, and the engine's
// own time per step-host (ns/op divided by 24, minus the 5 ms command).
func BenchmarkWalk(b *testing.B) {
	var steps strings.Builder
	for i := 0; i < 8; i++ {
		fmt.Fprintf(&steps, "  - {id: s%d, type: run, on: all, with: {cmd: c%d}}\n", i, i)
	}
	for _, par := range []int{1, 4} {
		b.Run(fmt.Sprintf("parallelism=%d", par), func(b *testing.B) {
			dir := b.TempDir()
			c := compileTest(b, writePlan(b, dir, "", steps.String()))
			w := &world{handler: func(string, string) (string, int, error) {
				time.Sleep(5 * time.Millisecond)
				return "", 0, nil
			}}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_, err := Apply(context.Background(), c, Options{StateDir: fmt.Sprintf("%s/state-%d", dir, i),
					Parallelism: par, Backend: w.backend, Registry: testRegistry(), RetryDelay: -1})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/24/1e6, "ms/step-host")
		})
	}
}

// Command ship measures etcd-rescue's snapshot shipping against OpenSSH's scp
// on the rehearsal lab, both in the same run, and prints ratios (never a
// timed assertion). Run it through `make bench-ship`, which brings the lab
// up (3 members, 0 keys) and down around it.
//
// It writes a snapshot-shaped file (random body + its sha256 trailer, which
// is all shipping looks at: the transfer does not open the bbolt file), then
// runs interleaved rounds of: scp to h1; `etcd-rescue apply` of a plan with
// one snapshot-copy step on h1; three scps in parallel to h1..h3; the same
// plan on h1..h3. It prints the median of each, MB/s and the ratios.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/etcd-rescue/etcd-rescue/bench/stats"
)

func main() {
	bin := flag.String("bin", "bin/etcd-rescue", "etcd-rescue binary")
	labDir := flag.String("lab", "/var/tmp/etcd-rescue-lab", "lab state dir (inventory.yaml, ssh/config)")
	work := flag.String("dir", "/var/tmp/etcd-rescue-bench/ship", "scratch dir on this machine")
	sizeMiB := flag.Int64("size-mib", 1024, "snapshot size in MiB")
	rounds := flag.Int("rounds", 3, "interleaved rounds")
	flag.Parse()
	if err := run(*bin, *labDir, *work, *sizeMiB<<20, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "bench-ship: error:", err)
		os.Exit(1)
	}
}

const remote = "/var/tmp/etcd-rescue-bench-ship.db"

func run(bin, labDir, work string, size int64, rounds int) error {
	bin, _ = filepath.Abs(bin)
	if err := os.MkdirAll(work, 0o700); err != nil {
		return err
	}
	snap := filepath.Join(work, "snapshot.db")
	if err := makeSnapshot(snap, size); err != nil {
		return err
	}
	inv := filepath.Join(labDir, "inventory.yaml")
	sshCfg := filepath.Join(labDir, "ssh", "config")
	hosts := []string{"h1", "h2", "h3"}
	plans := map[int]string{}
	for _, n := range []int{1, 3} {
		p := filepath.Join(work, fmt.Sprintf("ship-%d.yaml", n))
		plan := fmt.Sprintf(`version: 1
name: bench-ship-%d
description: ship one snapshot to %d host(s) (bench/ship)
steps:
  - {id: ship, type: snapshot-copy, on: [%s], with: {from: %q, to: %q}}
`, n, n, strings.Join(hosts[:n], ", "), snap, remote)
		if err := os.WriteFile(p, []byte(plan), 0o600); err != nil {
			return err
		}
		plans[n] = p
	}
	scp := func(h string) error {
		out, err := exec.Command("scp", "-q", "-F", sshCfg, snap, h+":"+remote).CombinedOutput()
		if err != nil {
			return fmt.Errorf("scp to %s: %v: %s", h, err, out)
		}
		return nil
	}
	clean := func() error {
		for _, h := range hosts {
			if out, err := exec.Command("ssh", "-F", sshCfg, h, "rm -f "+remote+"; sync").CombinedOutput(); err != nil {
				return fmt.Errorf("cleaning %s: %v: %s", h, err, out)
			}
		}
		return nil
	}
	apply := func(n int) (wall, step time.Duration, err error) {
		sd, err := os.MkdirTemp(work, "state-")
		if err != nil {
			return 0, 0, err
		}
		defer os.RemoveAll(sd)
		start := time.Now()
		out, err := exec.Command(bin, "apply", plans[n], "--inventory", inv, "--yes", "--progress", "plain", "--state-dir", sd).CombinedOutput()
		wall = time.Since(start)
		if err != nil {
			return 0, 0, fmt.Errorf("etcd-rescue apply (%d hosts): %v: %s", n, err, out)
		}
		st, err := exec.Command(bin, "status", "-o", "json", "--state-dir", sd).Output()
		if err != nil {
			return 0, 0, fmt.Errorf("etcd-rescue status: %v", err)
		}
		step, err = stepWindow(st)
		return wall, step, err
	}
	type series struct {
		name string
		d    []time.Duration
	}
	var scp1, er1, er1step, scp3, er3, er3step series
	scp1.name, er1.name, er1step.name = "scp to h1", "etcd-rescue apply, snapshot-copy to h1 (whole command)", "  of which the snapshot-copy step"
	scp3.name, er3.name, er3step.name = "3 parallel scps to h1..h3", "etcd-rescue apply, snapshot-copy to h1..h3 (whole command)", "  of which the snapshot-copy step"
	timeIt := func(f func() error) (time.Duration, error) {
		if err := clean(); err != nil {
			return 0, err
		}
		s := time.Now()
		err := f()
		return time.Since(s), err
	}
	for r := 1; r <= rounds; r++ {
		d, err := timeIt(func() error { return scp("h1") })
		if err != nil {
			return err
		}
		scp1.d = append(scp1.d, d)
		if err := clean(); err != nil {
			return err
		}
		w, s, err := apply(1)
		if err != nil {
			return err
		}
		er1.d, er1step.d = append(er1.d, w), append(er1step.d, s)
		d, err = timeIt(func() error {
			var wg sync.WaitGroup
			errs := make([]error, len(hosts))
			for i, h := range hosts {
				wg.Add(1)
				go func() { defer wg.Done(); errs[i] = scp(h) }()
			}
			wg.Wait()
			for _, e := range errs {
				if e != nil {
					return e
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		scp3.d = append(scp3.d, d)
		if err := clean(); err != nil {
			return err
		}
		w, s, err = apply(3)
		if err != nil {
			return err
		}
		er3.d, er3step.d = append(er3.d, w), append(er3step.d, s)
		fmt.Printf("round %d: scp %s, etcd-rescue %s (step %s); 3 scps %s, etcd-rescue 3 hosts %s (step %s)\n", r,
			stats.Sec(scp1.d[r-1]), stats.Sec(er1.d[r-1]), stats.Sec(er1step.d[r-1]), stats.Sec(scp3.d[r-1]), stats.Sec(er3.d[r-1]), stats.Sec(er3step.d[r-1]))
	}
	if err := clean(); err != nil {
		return err
	}
	mb := float64(size) / 1e6
	fmt.Printf("\nsnapshot %d MiB, %d rounds, medians:\n", size>>20, rounds)
	for _, s := range []series{scp1, er1, er1step, scp3, er3, er3step} {
		m := stats.Median(s.d)
		fmt.Printf("  %-62s %8s  %6.0f MB/s per host\n", s.name, stats.Sec(m), mb/m.Seconds())
	}
	fmt.Printf("\none host:  etcd-rescue reaches %.2fx scp's throughput (whole apply), %.2fx (the step)\n",
		stats.Median(scp1.d).Seconds()/stats.Median(er1.d).Seconds(), stats.Median(scp1.d).Seconds()/stats.Median(er1step.d).Seconds())
	fmt.Printf("3 hosts:   etcd-rescue takes %.2fx the time of 3 parallel scps (whole apply), %.2fx (the step)\n",
		stats.Median(er3.d).Seconds()/stats.Median(scp3.d).Seconds(), stats.Median(er3step.d).Seconds()/stats.Median(scp3.d).Seconds())
	return nil
}

// makeSnapshot writes size bytes: a random body and the sha256 trailer etcd
// appends to a snapshot saved through the client API.
func makeSnapshot(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	r := rand.NewChaCha8([32]byte{byte(time.Now().UnixNano())})
	if _, err := io.CopyN(w, r, size-sha256.Size); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(h.Sum(nil)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// stepWindow is the first start to the last finish of the step-hosts in
// `etcd-rescue status -o json` (the plan has one step).
func stepWindow(js []byte) (time.Duration, error) {
	var v any
	if err := json.Unmarshal(js, &v); err != nil {
		return 0, err
	}
	var first, last time.Time
	var walk func(any)
	walk = func(x any) {
		switch t := x.(type) {
		case map[string]any:
			s, ok1 := t["started"].(string)
			f, ok2 := t["finished"].(string)
			if ok1 && ok2 {
				ts, e1 := time.Parse(time.RFC3339Nano, s)
				tf, e2 := time.Parse(time.RFC3339Nano, f)
				if e1 == nil && e2 == nil {
					if first.IsZero() || ts.Before(first) {
						first = ts
					}
					if tf.After(last) {
						last = tf
					}
				}
			}
			for _, c := range t {
				walk(c)
			}
		case []any:
			for _, c := range t {
				walk(c)
			}
		}
	}
	walk(v)
	if first.IsZero() {
		return 0, fmt.Errorf("no step times in the status: %s", js)
	}
	return last.Sub(first), nil
}

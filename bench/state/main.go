// Command state measures a checkpoint write on the etcd state backend
// (package etcdstate: one fenced transaction on a management etcd) beside
// the file backend's two kinds of write, all in the same run, and prints
// medians, 90th percentiles and ratios (never a timed assertion). Run it
// through `make bench-state`.
//
// It starts a real etcd (lab/bin/v3.6.16/etcd, default settings but its
// ports) on 127.0.0.1 with its data dir beside the file backend's state dir,
// on the same filesystem, so both pay the same disk's fsync. It builds a
// realistic checkpoint (a runstate.State of 40 steps on 3 hosts with facts
// and approvals, marshalled as the file store does) and times WRITES
// writes of each, interleaved (one of each per round, the order rotating):
//
//   - file, durable: runstate.WriteFileAtomic of state.json (temp file,
//     fsync, rename, fsync of the dir), the call of a durable checkpoint;
//   - file, lazy: runstate.WriteFile (temp file, rename, no fsync);
//   - etcd: Store.Save, the checkpoint and a ~1 KB journal chunk in one
//     transaction fenced by the run lock and the checkpoint's revision
//     (etcd fsyncs its WAL before it answers).
//
// Every write is of a checkpoint changed since the last one (a step-host's
// status and times), marshalled before the clock starts.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/bench/stats"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate/etcdstate"
	"github.com/etcd-rescue/etcd-rescue/internal/etcdapi/etcdtest"
)

func main() {
	etcd := flag.String("etcd", "lab/bin/v3.6.16/etcd", "etcd binary of the state store")
	work := flag.String("dir", "/var/tmp/etcd-rescue-bench/state", "scratch dir: the file backend's state dir and etcd's data dir go under it")
	writes := flag.Int("writes", 200, "checkpoint writes of each kind")
	flag.Parse()
	if err := run(*etcd, *work, *writes); err != nil {
		fmt.Fprintln(os.Stderr, "bench-state: error:", err)
		os.Exit(1)
	}
}

func run(etcdBin, work string, writes int) error {
	if writes < 1 {
		return fmt.Errorf("-writes %d: want at least 1", writes)
	}
	if _, err := os.Stat(etcdBin); err != nil {
		return fmt.Errorf("%v; hint: make etcd-bins", err)
	}
	if err := os.MkdirAll(work, 0o700); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(work, "run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	stateDir := filepath.Join(dir, "state-dir", "runs", "bench")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}

	m, err := startEtcd(etcdBin, filepath.Join(dir, "etcd"))
	if err != nil {
		return err
	}
	defer m.Stop()
	ctx := context.Background()
	store, err := etcdstate.Open(ctx, etcdstate.Config{Endpoints: []string{m.Endpoint()}, Prefix: "bench"})
	if err != nil {
		return err
	}
	defer store.Close()
	host, _ := os.Hostname()
	lock, err := store.Lock(ctx, "bench", runstate.LockInfo{PID: os.Getpid(), Host: host, User: "bench", Started: time.Now().UTC(), RunID: "bench", Command: "bench"})
	if err != nil {
		return err
	}
	defer lock.Release()

	st := checkpoint(time.Now().UTC())
	first, err := marshal(st)
	if err != nil {
		return err
	}
	rev, err := store.Create(ctx, lock, st.RunID, first, runstate.RunFiles{Plan: []byte("version: 1\n")})
	if err != nil {
		return err
	}
	journal := journalChunk(st)
	path := filepath.Join(stateDir, "state.json")
	fmt.Printf("checkpoint: %d steps × 3 hosts, %d facts, %d bytes of JSON; journal chunk %d bytes\n", len(st.Steps), len(st.Facts), len(first), len(journal))
	fmt.Printf("file backend: %s (%s); etcd %s: data in %s, client on %s\n", stateDir, fsType(stateDir), etcdVersion(etcdBin), m.DataDir, m.Endpoint())

	var durable, lazy, etcd, marshalT []time.Duration
	for i := 0; i < writes; i++ {
		h := st.Steps[i%len(st.Steps)].Hosts[i%3]
		now := time.Now().UTC()
		h.Status, h.Finished, h.Attempts = runstate.StatusDone, &now, h.Attempts+1
		h.AddTime(1500*time.Millisecond, time.Second, 200*time.Millisecond, 3)
		st.Updated = now
		t0 := time.Now()
		b, err := marshal(st)
		if err != nil {
			return err
		}
		marshalT = append(marshalT, time.Since(t0))
		for k := 0; k < 3; k++ {
			t0 := time.Now()
			switch (i + k) % 3 {
			case 0:
				if err := runstate.WriteFileAtomic(path, b, 0o600); err != nil {
					return err
				}
				durable = append(durable, time.Since(t0))
			case 1:
				if err := runstate.WriteFile(path, b, 0o600); err != nil {
					return err
				}
				lazy = append(lazy, time.Since(t0))
			case 2:
				if rev, err = store.Save(ctx, lock, st.RunID, rev, b, journal); err != nil {
					return err
				}
				etcd = append(etcd, time.Since(t0))
			}
		}
	}

	fmt.Printf("\n%d writes of each, interleaved:          median        p90\n", writes)
	for _, r := range []struct {
		name string
		d    []time.Duration
	}{
		{"file, durable (WriteFileAtomic)", durable},
		{"file, lazy (WriteFile)", lazy},
		{"etcd (Save: one fenced txn + journal)", etcd},
		{"marshal of the checkpoint (both)", marshalT},
	} {
		fmt.Printf("  %-38s %9s  %9s\n", r.name, ms(stats.Median(r.d)), ms(stats.Percentile(r.d, 90)))
	}
	e := stats.Median(etcd).Seconds()
	fmt.Printf("\netcd / file durable: %.2fx (median), %.2fx (p90)\n", e/stats.Median(durable).Seconds(), stats.Percentile(etcd, 90).Seconds()/stats.Percentile(durable, 90).Seconds())
	fmt.Printf("etcd / file lazy:    %.2fx (median), %.2fx (p90)\n", e/stats.Median(lazy).Seconds(), stats.Percentile(etcd, 90).Seconds()/stats.Percentile(lazy, 90).Seconds())

	// The store holds what was written last.
	got, err := store.Load(ctx, st.RunID)
	if err != nil {
		return err
	}
	last, _ := marshal(st)
	if got.Rev != rev || !bytes.Equal(got.State, last) {
		return fmt.Errorf("the store's checkpoint is not the last one written (revision %d, want %d)", got.Rev, rev)
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d.Microseconds())/1000) }

// marshal is the file store's encoding of a checkpoint (indented, HTML
// left alone, a final newline).
func marshal(st *runstate.State) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(st); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// checkpoint is a run of a 40-step plan on 3 hosts, halfway: the first
// steps done with their times, facts collected, one approval.
func checkpoint(now time.Time) *runstate.State {
	st := &runstate.State{
		Format: runstate.StateFormat, RunID: runstate.NewRunID(now), Plan: "/home/ops/plans/restore-prod.yaml",
		Inventory: "/home/ops/inventories/prod.yaml", PlanSHA256: strings.Repeat("ab", 32), PlanName: "restore-prod",
		Cluster: "prod", StartedBy: "alice@ops-laptop", Outcome: runstate.OutcomeRunning,
		Created: now, Updated: now, Sessions: 1,
		Facts:     map[string]string{},
		Approvals: map[string]*runstate.Approval{"approve-restore": {At: now, By: "alice", How: "prompt"}},
	}
	types := []string{"check-quorum", "stop-member", "snapshot-save", "snapshot-restore", "start-member", "wait-healthy", "verify-keys", "approve"}
	for i := 0; i < 40; i++ {
		s := &runstate.StepState{ID: fmt.Sprintf("step-%02d-%s", i, types[i%len(types)]), Type: types[i%len(types)]}
		for h := 1; h <= 3; h++ {
			hs := &runstate.HostState{Host: fmt.Sprintf("etcd%d.prod.example.com", h), Status: runstate.StatusPending}
			if i < 20 {
				start, end := now.Add(-time.Duration(40-i)*time.Minute), now.Add(-time.Duration(39-i)*time.Minute)
				hs.Status, hs.Started, hs.Finished, hs.Attempts = runstate.StatusDone, &start, &end, 1
				hs.AddTime(2*time.Second, 1500*time.Millisecond, 300*time.Millisecond, 4)
				hs.Why = "member etcd" + fmt.Sprint(h) + " is healthy at revision 184467 (raft term 12)"
			}
			s.Hosts = append(s.Hosts, hs)
		}
		st.Steps = append(st.Steps, s)
	}
	for h := 1; h <= 3; h++ {
		for _, k := range []string{"memberID", "dataDir", "clientURL", "peerURL", "revision", "dbSize", "snapshot", "snapshotSHA256", "version", "raftTerm"} {
			st.Facts[fmt.Sprintf("etcd%d.%s", h, k)] = fmt.Sprintf("%s-of-etcd%d-%s", k, h, strings.Repeat("x", 24))
		}
	}
	return st
}

// journalChunk is about 1 KB of journal lines: what a step-host logs
// between two durable checkpoints.
func journalChunk(st *runstate.State) []byte {
	var buf bytes.Buffer
	for i := 0; buf.Len() < 1000; i++ {
		ev := runstate.Event{Time: st.Updated, Type: "log", Step: st.Steps[i%len(st.Steps)].ID, Host: "etcd1.prod.example.com",
			Msg: fmt.Sprintf("member etcd1 healthy: revision %d, raft term 12, leader 8e9e05c52164694d", 184467+i)}
		b, _ := json.Marshal(ev)
		buf.Write(append(b, '\n'))
	}
	return buf.Bytes()
}

// startEtcd starts a one-member etcd with its data in dataDir (its log
// beside it) and waits until it reports itself healthy.
func startEtcd(bin, dataDir string) (*etcdtest.Member, error) {
	m, err := etcdtest.Run(etcdtest.Options{Binary: bin, Name: "store", DataDir: dataDir})
	if err != nil {
		return nil, err
	}
	if err := m.Healthy(30 * time.Second); err != nil {
		m.Stop()
		return nil, err
	}
	return m, nil
}

// etcdVersion is the first line of etcd --version's version.
func etcdVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "?"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(line, "etcd Version:"))
}

// fsType names the filesystem of dir (from /proc/self/mounts: the longest
// mount point that holds it).
func fsType(dir string) string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "filesystem unknown"
	}
	best, typ := "", "filesystem unknown"
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		mp := f[1]
		if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best, typ = mp, f[2]+" on "+mp
		}
	}
	return typ
}

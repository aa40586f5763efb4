// Command s3 measures etcd-rescue's snapshot transfers to and from an
// S3-compatible store on the rehearsal lab (lab up --s3: a real SeaweedFS
// server on this machine's loopback) beside a plain cp of the same file,
// both in the same run, and prints ratios and etcd-rescue's peak memory
// (never a timed assertion). Run it through `make bench-s3`, which brings
// a one-member lab with the store up and down around it.
//
// It fills etcd with SIZE MiB of values (1 MiB each) so that the snapshot
// is a real one of at least that size, then runs interleaved rounds of:
//
//   - `etcd-rescue apply` of a backup plan: snapshot-save to
//     s3://BUCKET/bench/ (the snapshot streamed from etcd to a staging
//     file, uploaded, read back and verified, retention keep {last: 1});
//     the upload and the read-back are timed from the step's own journal
//     lines;
//   - `etcd-rescue apply` of a fetch plan: snapshot-fetch of the newest
//     object under the prefix to a local file, its sha256 checked against
//     the object's metadata and the snapshot's own trailer;
//   - cp of a snapshot of the same size (saved once with etcdctl) to the
//     same disk, followed by fsync, the baseline of each.
//
// Peak memory is the maximum resident set size (getrusage) of each
// etcd-rescue process; the goal is under 100 MiB, and the command exits 1
// when a run exceeds it.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/etcd-rescue/etcd-rescue/bench/stats"

	"gopkg.in/yaml.v3"
)

// memGoal is the peak resident set etcd-rescue must stay under.
const memGoal = 100 << 20

func main() {
	bin := flag.String("bin", "bin/etcd-rescue", "etcd-rescue binary")
	labDir := flag.String("lab", "/var/tmp/etcd-rescue-lab", "lab state dir (inventory.yaml)")
	work := flag.String("dir", "/var/tmp/etcd-rescue-bench/s3", "scratch dir on this machine")
	sizeMiB := flag.Int("size-mib", 1024, "data written to etcd before the snapshots, MiB (the snapshot is a little larger)")
	rounds := flag.Int("rounds", 3, "interleaved rounds")
	flag.Parse()
	if err := run(*bin, *labDir, *work, *sizeMiB, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "bench-s3: error:", err)
		os.Exit(1)
	}
}

type inventory struct {
	Cluster struct {
		EtcdVersion string `yaml:"etcdVersion"`
		Members     []struct {
			Name      string `yaml:"name"`
			ClientURL string `yaml:"clientURL"`
		} `yaml:"members"`
		TLS *struct {
			CA   string `yaml:"ca"`
			Cert string `yaml:"cert"`
			Key  string `yaml:"key"`
		} `yaml:"tls"`
	} `yaml:"cluster"`
	S3 *struct {
		Endpoint string `yaml:"endpoint"`
	} `yaml:"s3"`
	Vars map[string]string `yaml:"vars"`
}

func run(bin, labDir, work string, sizeMiB, rounds int) error {
	bin, _ = filepath.Abs(bin)
	if err := os.MkdirAll(work, 0o700); err != nil {
		return err
	}
	invPath := filepath.Join(labDir, "inventory.yaml")
	b, err := os.ReadFile(invPath)
	if err != nil {
		return err
	}
	var inv inventory
	if err := yaml.Unmarshal(b, &inv); err != nil {
		return fmt.Errorf("%s: %v", invPath, err)
	}
	if inv.S3 == nil || inv.Vars["s3Bucket"] == "" {
		return fmt.Errorf("%s has no s3: section: bring the lab up with --s3", invPath)
	}
	if len(inv.Cluster.Members) == 0 {
		return fmt.Errorf("%s lists no member", invPath)
	}
	etcdctl, err := etcdctlFor(inv.Cluster.EtcdVersion)
	if err != nil {
		return err
	}
	ctlArgs := []string{"--endpoints=" + inv.Cluster.Members[0].ClientURL, "--command-timeout=60s"}
	if t := inv.Cluster.TLS; t != nil {
		rel := func(p string) string {
			if filepath.IsAbs(p) {
				return p
			}
			return filepath.Join(labDir, p)
		}
		ctlArgs = append(ctlArgs, "--cacert="+rel(t.CA), "--cert="+rel(t.Cert), "--key="+rel(t.Key))
	}
	fmt.Printf("filling etcd with %d MiB (1 MiB values)...\n", sizeMiB)
	t0 := time.Now()
	if err := fill(etcdctl, ctlArgs, sizeMiB); err != nil {
		return err
	}
	fmt.Printf("filled in %.1fs\n", time.Since(t0).Seconds())
	snap := filepath.Join(work, "etcdctl.db")
	_ = os.Remove(snap)
	if out, err := exec.Command(etcdctl, append(ctlArgs, "snapshot", "save", snap)...).CombinedOutput(); err != nil {
		return fmt.Errorf("etcdctl snapshot save: %v: %s", err, out)
	}
	st, err := os.Stat(snap)
	if err != nil {
		return err
	}
	size := st.Size()
	fmt.Printf("snapshot: %.2f GiB\n", float64(size)/(1<<30))

	prefix := "bench/"
	backup := filepath.Join(work, "backup.yaml")
	fetched := filepath.Join(work, "fetched.db")
	fetch := filepath.Join(work, "fetch.yaml")
	if err := os.WriteFile(backup, []byte(fmt.Sprintf(`version: 1
name: bench-s3-backup
description: a snapshot of etcd1 to the lab's S3 store (bench/s3)
steps:
  - id: save
    type: snapshot-save
    on: %s
    with:
      to: "s3://${vars.s3Bucket}/%setcd-${run.id}.db"
      keep: {last: 1}
`, inv.Cluster.Members[0].Name, prefix)), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(fetch, []byte(fmt.Sprintf(`version: 1
name: bench-s3-fetch
description: the newest snapshot from the lab's S3 store to this machine (bench/s3)
steps:
  - id: fetch
    type: snapshot-fetch
    with:
      from: "s3://${vars.s3Bucket}/%s"
      select: latest
      to: %q
`, prefix, fetched)), 0o600); err != nil {
		return err
	}

	var up, verify, upStep, upCPU, down, downStep, downCPU, cp1, cp2 []time.Duration
	var peakUp, peakDown int64
	for r := 1; r <= rounds; r++ {
		d, err := cp(snap, filepath.Join(work, "cp.db"))
		if err != nil {
			return err
		}
		cp1 = append(cp1, d)
		res, err := apply(bin, backup, invPath, work)
		if err != nil {
			return err
		}
		u, v, err := uploadTimes(res.events)
		if err != nil {
			return err
		}
		up, verify, upStep, upCPU = append(up, u), append(verify, v), append(upStep, res.wall), append(upCPU, res.cpu)
		peakUp = max(peakUp, res.maxRSS)
		upRSS := res.maxRSS

		d, err = cp(snap, filepath.Join(work, "cp.db"))
		if err != nil {
			return err
		}
		cp2 = append(cp2, d)
		_ = os.Remove(fetched)
		res, err = apply(bin, fetch, invPath, work)
		if err != nil {
			return err
		}
		dl, err := downloadTime(res.events)
		if err != nil {
			return err
		}
		down, downStep, downCPU = append(down, dl), append(downStep, res.wall), append(downCPU, res.cpu)
		peakDown = max(peakDown, res.maxRSS)
		fmt.Printf("round %d: cp %s; upload %s + read back %s (apply %s, CPU %s, peak %s); cp %s; download %s (apply %s, CPU %s, peak %s)\n", r,
			stats.Sec(cp1[r-1]), stats.Sec(u), stats.Sec(v), stats.Sec(upStep[r-1]), stats.Sec(upCPU[r-1]), mib(upRSS),
			stats.Sec(cp2[r-1]), stats.Sec(dl), stats.Sec(res.wall), stats.Sec(res.cpu), mib(res.maxRSS))
	}
	for _, f := range []string{filepath.Join(work, "cp.db"), fetched} {
		_ = os.Remove(f)
	}
	mb := float64(size) / 1e6
	rate := func(d time.Duration) float64 { return mb / d.Seconds() }
	cpm := stats.Median(append(append([]time.Duration(nil), cp1...), cp2...))
	fmt.Printf("\nsnapshot %.2f GiB (%d bytes), %d rounds, medians:\n", float64(size)/(1<<30), size, rounds)
	for _, s := range []struct {
		name string
		d    []time.Duration
	}{
		{"cp + fsync of the snapshot on this machine (baseline)", append(append([]time.Duration(nil), cp1...), cp2...)},
		{"etcd-rescue upload to S3 (multipart, streamed from the file)", up},
		{"  then the last part and the read-back (sha256 of the whole object)", verify},
		{"  the whole backup apply (save from etcd, upload, verify, retention)", upStep},
		{"etcd-rescue download from S3 (sha256 checked while writing, fsync)", down},
		{"  the whole fetch apply (select latest, download, trailer check)", downStep},
	} {
		m := stats.Median(s.d)
		fmt.Printf("  %-72s %8s  %6.0f MB/s\n", s.name, stats.Sec(m), rate(m))
	}
	upv := make([]time.Duration, len(up))
	for i := range up {
		upv[i] = up[i] + verify[i]
	}
	fmt.Printf("\nupload:   %.2fx the throughput of cp (%.2fx with the read-back that verifies it)\n", cpm.Seconds()/stats.Median(up).Seconds(), cpm.Seconds()/stats.Median(upv).Seconds())
	fmt.Printf("download: %.2fx the throughput of cp\n", cpm.Seconds()/stats.Median(down).Seconds())
	fmt.Printf("CPU time of etcd-rescue (user + system, median): backup %s, fetch %s\n", stats.Sec(stats.Median(upCPU)), stats.Sec(stats.Median(downCPU)))
	fmt.Printf("peak memory of etcd-rescue (max RSS): backup %s, fetch %s (goal: under %s)\n", mib(peakUp), mib(peakDown), mib(memGoal))
	if hwm := serverPeak(labDir); hwm != "" {
		fmt.Printf("peak memory of the lab's SeaweedFS (VmHWM): %s\n", hwm)
	}
	if peakUp >= memGoal || peakDown >= memGoal {
		return fmt.Errorf("etcd-rescue's peak memory exceeds %s", mib(memGoal))
	}
	return nil
}

// serverPeak is the peak resident set of the lab's weed (STATE/s3/weed.pid),
// "" when it cannot be read.
func serverPeak(labDir string) string {
	pid, err := os.ReadFile(filepath.Join(labDir, "s3", "weed.pid"))
	if err != nil {
		return ""
	}
	st, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(pid)), "status"))
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// etcdctlFor finds the lab's etcdctl build for version (x.y.z, or x.y: the
// one build of that minor).
func etcdctlFor(version string) (string, error) {
	m, _ := filepath.Glob(filepath.Join("lab", "bin", "v"+version+"*", "etcdctl"))
	if len(m) == 0 {
		return "", fmt.Errorf("no lab/bin/v%s*/etcdctl: run make lab-prereqs", version)
	}
	return m[0], nil
}

// fill writes sizeMiB values of 1 MiB under /bench/s3/ through etcdctl,
// four writers at a time.
func fill(etcdctl string, args []string, sizeMiB int) error {
	val := make([]byte, 1<<20)
	r := rand.NewChaCha8([32]byte{1})
	_, _ = r.Read(val)
	const alpha = "abcdefghijklmnopqrstuvwxyz0123456789"
	for i := range val {
		val[i] = alpha[int(val[i])%len(alpha)]
	}
	file := filepath.Join(os.TempDir(), "bench-s3-value")
	if err := os.WriteFile(file, val, 0o600); err != nil {
		return err
	}
	defer os.Remove(file)
	errs := make(chan error, sizeMiB)
	sem := make(chan struct{}, 4)
	for i := 0; i < sizeMiB; i++ {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			f, err := os.Open(file)
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			c := exec.Command(etcdctl, append(args, "put", fmt.Sprintf("/bench/s3/%05d", i))...)
			c.Stdin = f
			if out, err := c.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("etcdctl put: %v: %s", err, out)
			}
		}()
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
	close(errs)
	return <-errs
}

// cp copies src to dst with cp(1) and fsyncs dst, the baseline.
func cp(src, dst string) (time.Duration, error) {
	_ = os.Remove(dst)
	t0 := time.Now()
	if out, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("cp: %v: %s", err, out)
	}
	if out, err := exec.Command("sync", dst).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("sync: %v: %s", err, out)
	}
	return time.Since(t0), nil
}

type applied struct {
	wall   time.Duration
	maxRSS int64
	cpu    time.Duration // user + system time of the etcd-rescue process
	events []event
}

type event struct {
	Time time.Time `json:"time"`
	Type string    `json:"type"`
	Step string    `json:"step"`
	Msg  string    `json:"msg"`
}

// apply runs etcd-rescue apply in a fresh state dir and returns its wall
// time, its peak resident set and the run's events.
func apply(bin, plan, inv, work string) (applied, error) {
	sd, err := os.MkdirTemp(work, "state-")
	if err != nil {
		return applied{}, err
	}
	defer os.RemoveAll(sd)
	c := exec.CommandContext(context.Background(), bin, "apply", plan, "--inventory", inv, "--yes", "--progress", "plain", "--state-dir", sd)
	t0 := time.Now()
	out, err := c.CombinedOutput()
	wall := time.Since(t0)
	if err != nil {
		return applied{}, fmt.Errorf("etcd-rescue apply %s: %v: %s", filepath.Base(plan), err, out)
	}
	ru, _ := c.ProcessState.SysUsage().(*syscall.Rusage)
	res := applied{wall: wall}
	if ru != nil {
		res.maxRSS = ru.Maxrss << 10 // KiB on Linux
		res.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	files, _ := filepath.Glob(filepath.Join(sd, "runs", "*", "events.jsonl"))
	if len(files) != 1 {
		return applied{}, fmt.Errorf("want one run's events in %s, found %d", sd, len(files))
	}
	f, err := os.Open(files[0])
	if err != nil {
		return applied{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev event
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type == "log" {
			res.events = append(res.events, ev)
		}
	}
	return res, sc.Err()
}

var (
	reUploading = regexp.MustCompile(`; uploading to s3://`)
	reUpload    = regexp.MustCompile(`^s3 upload s3://`)
	reVerified  = regexp.MustCompile(`^uploaded and verified s3://`)
	reChose     = regexp.MustCompile(`^chose s3://`)
	reDownload  = regexp.MustCompile(`^s3 download s3://`)
)

// at is the time of the first (or the last) log event matching re.
func at(evs []event, re *regexp.Regexp, last bool) (time.Time, error) {
	var t time.Time
	for _, e := range evs {
		if re.MatchString(e.Msg) {
			t = e.Time
			if !last {
				break
			}
		}
	}
	if !t.IsZero() {
		return t, nil
	}
	var msgs []string
	for _, e := range evs {
		msgs = append(msgs, e.Msg)
	}
	return t, fmt.Errorf("no journal line matches %q; the run logged:\n  %s", re, strings.Join(msgs, "\n  "))
}

// uploadTimes: from "... uploading to" to the last progress line of the
// upload (the last part read from the file), then to "uploaded and
// verified" (the rest of the upload and the read-back of the whole object).
func uploadTimes(evs []event) (up, verify time.Duration, err error) {
	a, err := at(evs, reUploading, false)
	if err != nil {
		return 0, 0, err
	}
	b, err := at(evs, reUpload, true)
	if err != nil {
		return 0, 0, err
	}
	c, err := at(evs, reVerified, false)
	if err != nil {
		return 0, 0, err
	}
	return b.Sub(a), c.Sub(b), nil
}

// downloadTime: from the choice of the object to its last progress line
// (the last byte written, hashed on the way).
func downloadTime(evs []event) (time.Duration, error) {
	a, err := at(evs, reChose, false)
	if err != nil {
		return 0, err
	}
	b, err := at(evs, reDownload, true)
	if err != nil {
		return 0, err
	}
	return b.Sub(a), nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

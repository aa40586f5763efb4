package lab

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/weedserver"
	"github.com/minio/minio-go/v7"
)

// The lab's S3-compatible object store (Options.S3, `lab up --s3`): a real
// SeaweedFS (`weed server -s3`: master, volume server, filer and S3 gateway
// in one process) on the operator side, listening on 127.0.0.1 only, the
// S3 API over https with a certificate the lab's CA signs, one access key
// and secret key made per lab, and the bucket S3Bucket.  Its files are in
// S3Dir: data/, weed.pid, weed.log, the identity config and the server's
// certificate.  Lab hosts cannot reach it (it is not on the lab network):
// steps that use it run on the operator machine.
const (
	// SeaweedFSVersion is the SeaweedFS release `make s3-bins` builds
	// (SEAWEEDFS_VERSION in lab/lab.mk; TestMakefileS3InSync checks it).
	SeaweedFSVersion = "4.53"
	// S3Bucket is the bucket `lab up --s3` creates (vars.s3Bucket).
	S3Bucket = "etcd-backups"
	// S3Region is the region the inventory names (SeaweedFS accepts any).
	S3Region = "us-east-1"

	s3Subdir = "s3"
	// weed's volume size limit and volume count: small volumes keep the
	// server's memory small; 64 of 256 MiB hold 16 GiB.
	s3VolumeSizeMB = 256
	s3VolumeMax    = 64
	// weed's Go heap goal (GOMEMLIMIT): the garbage collector works harder
	// as the heap nears it, instead of letting it grow with every upload.
	// Not lower: at 128MiB a 1.2 GiB upload ran at 13 MB/s with weed
	// collecting garbage on 1.5 cores; at 1GiB it ran at 73 MB/s (make
	// bench-s3, docs/measurements.md).
	s3MemLimit = "1GiB"
	// how long lab up waits for the S3 API to answer
	s3ReadyTimeout = 2 * time.Minute
)

// SeaweedFSBin is the weed binary `make s3-bins` builds under the lab's bin
// dir: <binDir>/seaweedfs/<SeaweedFSVersion>/weed (<binDir>/seaweedfs/weed
// links to it).
func SeaweedFSBin(binDir string) string {
	return filepath.Join(binDir, "seaweedfs", SeaweedFSVersion, "weed")
}

// s3State is the store in lab.json (the file is 0600, in a 0700 dir).
type s3State struct {
	PID       int            `json:"pid"`
	Port      int            `json:"port"`  // the S3 API: https://127.0.0.1:Port
	Ports     map[string]int `json:"ports"` // every port weed listens on, by flag name
	Bin       string         `json:"bin"`
	AccessKey string         `json:"accessKey"`
	SecretKey string         `json:"secretKey"`
	Started   time.Time      `json:"started"`
}

// S3Info says where the lab's store is and how to reach it.
type S3Info struct {
	Endpoint  string // https://127.0.0.1:PORT
	Region    string // S3Region
	Bucket    string // S3Bucket
	CAFile    string // the lab's CA (CACertPath), which signed the server's certificate
	AccessKey string
	SecretKey string
	PID       int    // of weed
	Dir       string // S3Dir
	LogFile   string // S3LogPath
}

// S3 returns the lab's object store, or nil when it was brought up
// without one.
func (l *Lab) S3() *S3Info {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.st.S3
	if s == nil {
		return nil
	}
	return &S3Info{Endpoint: s3Endpoint(s.Port), Region: S3Region, Bucket: S3Bucket, CAFile: l.CACertPath(),
		AccessKey: s.AccessKey, SecretKey: s.SecretKey, PID: s.PID, Dir: l.S3Dir(), LogFile: l.S3LogPath()}
}

func s3Endpoint(port int) string { return "https://127.0.0.1:" + strconv.Itoa(port) }

// S3Dir holds the store's files: data/ (weed's master, volume and filer
// data), weed.pid, weed.log, s3.json (the identity config, 0600),
// tls.crt and tls.key.  Down removes it.
func (l *Lab) S3Dir() string { return filepath.Join(l.dir, s3Subdir) }

// S3PIDPath and S3LogPath are weed's pid file and its output.
func (l *Lab) S3PIDPath() string { return filepath.Join(l.S3Dir(), "weed.pid") }
func (l *Lab) S3LogPath() string { return filepath.Join(l.S3Dir(), "weed.log") }

func (l *Lab) s3DataDir() string { return filepath.Join(l.S3Dir(), "data") }

// s3Missing lists what Options.S3 needs.
func s3Missing(binDir string) []Missing {
	bin := SeaweedFSBin(binDir)
	if st, err := os.Stat(bin); err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return []Missing{{What: bin + " (SeaweedFS " + SeaweedFSVersion + ", for lab up --s3)", Install: "make s3-bins"}}
	}
	return nil
}

// startS3 starts weed for the lab: keys, certificate and identity config
// made first; it does not wait for the S3 API (waitS3 does).
func (l *Lab) startS3(ctx context.Context) error {
	dir := l.S3Dir()
	if err := os.MkdirAll(l.s3DataDir(), 0o700); err != nil {
		return fmt.Errorf("s3: %w", err)
	}
	ca, err := l.loadCA()
	if err != nil {
		return fmt.Errorf("s3: %w", err)
	}
	crt, key, err := ca.issue("etcd-rescue lab S3", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		[]net.IP{net.ParseIP("127.0.0.1").To4(), net.IPv6loopback}, []string{"localhost"})
	if err != nil {
		return fmt.Errorf("s3: server certificate: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, "tls.key"), key, 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, "tls.crt"), crt, 0o644); err != nil {
		return err
	}
	// 20 and 40 characters, as AWS's key pairs have
	access := "LAB" + strings.ToUpper(randHex(9))[:17]
	secret := randHex(20)
	ident, err := weedserver.Identities("etcd-rescue-lab", access, secret)
	if err != nil {
		return fmt.Errorf("s3: identity config: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, "s3.json"), ident, 0o600); err != nil {
		return err
	}
	l.mu.Lock()
	l.st.S3 = &s3State{Bin: SeaweedFSBin(l.st.BinDir), AccessKey: access, SecretKey: secret}
	l.mu.Unlock()
	return l.spawnS3(ctx)
}

// spawnS3 starts weed on fresh free ports and records it (lab.json and
// the pid file).  The process is in a session of its own: it outlives the
// command that started it, until Down.
func (l *Lab) spawnS3(ctx context.Context) error {
	dir := l.S3Dir()
	ports, err := weedserver.NewPorts()
	if err != nil {
		return fmt.Errorf("s3: %w", err)
	}
	l.mu.Lock()
	s := l.st.S3
	l.mu.Unlock()
	args := weedserver.Args(weedserver.Config{
		Dir:            dir,
		DataDir:        l.s3DataDir(),
		Ports:          ports,
		CertFile:       filepath.Join(dir, "tls.crt"),
		KeyFile:        filepath.Join(dir, "tls.key"),
		IdentitiesFile: filepath.Join(dir, "s3.json"),
		VolumeSizeMB:   s3VolumeSizeMB,
		VolumeMax:      s3VolumeMax,
	})
	cmd := exec.Command(s.Bin, args...)
	cmd.Dir = dir
	cmd.Env = weedserver.Env(dir, s3MemLimit)
	pid, err := startDetached(cmd, l.S3LogPath())
	if err != nil {
		return fmt.Errorf("s3: %w", err)
	}
	l.mu.Lock()
	s.PID, s.Port, s.Ports, s.Started = pid, ports.S3(), ports, time.Now().UTC()
	l.mu.Unlock()
	if err := writeFileAtomic(l.S3PIDPath(), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return err
	}
	return l.save()
}

// s3Client is a minio-go client of the lab's store, trusting the lab's CA.
func (l *Lab) s3Client(info *S3Info) (*minio.Client, error) {
	cli, err := weedserver.Client(info.Endpoint, info.CAFile, info.Region, info.AccessKey, info.SecretKey)
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	return cli, nil
}

// waitS3 waits until the S3 API answers a signed ListBuckets, creates
// S3Bucket, checks that a signed HeadBucket finds it, and writes (and
// removes) a first object in it.  A weed that died
// because another process took one of its ports meanwhile is started again
// on other ports (twice at most).
func (l *Lab) waitS3(ctx context.Context) error {
	info := l.S3()
	if info == nil {
		return nil
	}
	deadline := time.Now().Add(s3ReadyTimeout)
	restarts, tries := 0, 0 // tries: signed requests that failed
	var cli *minio.Client
	for {
		info = l.S3()
		var err error
		if cli, err = l.s3Client(info); err != nil {
			return err
		}
		pid := info.PID
		failed, err := weedserver.WaitAnswers(ctx, cli, deadline, func() bool { return alive(pid) })
		tries += failed
		if errors.Is(err, weedserver.ErrExited) {
			tail := logTail(l.S3LogPath(), 20)
			if strings.Contains(tail, "address already in use") && restarts < 2 {
				restarts++
				l.logf("s3: weed lost a port to another process; starting it again on other ports")
				if err := l.spawnS3(ctx); err != nil {
					return err
				}
				continue
			}
			return withOutput(fmt.Errorf("s3: weed (pid %d) exited before its S3 API answered (log: %s)", info.PID, l.S3LogPath()), tail)
		}
		if err != nil {
			return withOutput(fmt.Errorf("s3: %w (waited %s; log: %s)", err, s3ReadyTimeout, l.S3LogPath()), logTail(l.S3LogPath(), 20))
		}
		// with tries 0 it answered before lab up first asked (the hosts
		// took longer): the time is an upper bound
		when := "answers"
		if tries == 0 {
			when = "answered the first"
		}
		l.logf("s3: weed (pid %d) %s signed ListBuckets at %s, %.1fs after it started", info.PID, when, info.Endpoint, time.Since(l.s3Started()).Seconds())
		break
	}
	if err := weedserver.MakeBucket(ctx, cli, S3Bucket, S3Region, deadline); err != nil {
		return fmt.Errorf("s3: %w (log: %s)", err, l.S3LogPath())
	}
	// The first write to a bucket makes weed grow volumes for it, which
	// takes seconds: done here, so that a plan's first upload (or a
	// benchmark's) does not pay for it.
	wctx, cancel := context.WithTimeout(ctx, time.Until(deadline))
	defer cancel()
	const warm = ".etcd-rescue-lab-warmup"
	if _, err := cli.PutObject(wctx, S3Bucket, warm, strings.NewReader("warm-up write of lab up\n"), -1, minio.PutObjectOptions{}); err != nil {
		return fmt.Errorf("s3: first write to bucket %s: %w (log: %s)", S3Bucket, err, l.S3LogPath())
	}
	if err := cli.RemoveObject(wctx, S3Bucket, warm, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("s3: remove %s/%s: %w (log: %s)", S3Bucket, warm, err, l.S3LogPath())
	}
	return nil
}

// s3Started is when the running weed was started.
func (l *Lab) s3Started() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st.S3 == nil {
		return time.Time{}
	}
	return l.st.S3.Started
}

// logTail is the last n lines of file.
func logTail(file string, n int) string {
	b, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// isLabWeed: pid is a weed serving this lab's data dir (a pid may have
// been reused by an unrelated process since).
func (l *Lab) isLabWeed(pid int) bool {
	return runsWith(pid, "-dir="+l.s3DataDir())
}

// stopS3 kills the lab's weed (SIGKILL, see killPID) and removes
// S3Dir with its data, and the unix sockets weed puts in /tmp for its
// gRPC ports.  Without a store in the state it still stops a weed its pid
// file names (a lab up that failed before it saved the state).
func (l *Lab) stopS3() error {
	l.mu.Lock()
	s := l.st.S3
	l.mu.Unlock()
	pid := 0
	var ports map[string]int
	if s != nil {
		pid, ports = s.PID, s.Ports
	}
	if b, err := os.ReadFile(l.S3PIDPath()); err == nil {
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p != pid && l.isLabWeed(p) {
			if pid != 0 && l.isLabWeed(pid) {
				if err := killPID(pid, "s3: weed"); err != nil {
					return err
				}
			}
			pid = p
		}
	}
	if pid != 0 && l.isLabWeed(pid) {
		if err := killPID(pid, "s3: weed"); err != nil {
			return err
		}
	}
	weedserver.RemoveSockets(ports)
	if err := os.RemoveAll(l.S3Dir()); err != nil {
		return fmt.Errorf("s3: remove %s: %w", l.S3Dir(), err)
	}
	l.mu.Lock()
	l.st.S3 = nil
	l.mu.Unlock()
	return nil
}

// S3Status is the store in Status.
type S3Status struct {
	Endpoint string
	Bucket   string
	PID      int
	// State: "up" (a signed HeadBucket of Bucket answers), else "down: why"
	State string
	RSS   uint64 // weed's resident set, bytes (0 when it is not running)
}

// s3Status asks the store whether it is up.
func (l *Lab) s3Status(ctx context.Context) *S3Status {
	info := l.S3()
	if info == nil {
		return nil
	}
	st := &S3Status{Endpoint: info.Endpoint, Bucket: info.Bucket, PID: info.PID}
	if !l.isLabWeed(info.PID) {
		st.State = fmt.Sprintf("down: weed (pid %d) is not running (log: %s)", info.PID, info.LogFile)
		return st
	}
	st.RSS = rss(info.PID)
	cli, err := l.s3Client(info)
	if err == nil {
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var ok bool
		ok, err = cli.BucketExists(hctx, info.Bucket)
		cancel()
		if err == nil && !ok {
			err = fmt.Errorf("no bucket %s", info.Bucket)
		}
	}
	if err != nil {
		st.State = "down: " + shortErr(err)
		return st
	}
	st.State = "up"
	return st
}

// rss is the resident set size of pid (VmRSS), bytes.
func rss(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if f := strings.Fields(string(line)); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

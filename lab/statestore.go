package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/internal/weedserver"
)

// The lab's management etcd (Options.StateStore, `lab up --state-store`):
// one real etcd on the operator side, the team's shared store of run state
// and run locks that `--state etcd://...` and an inventory's state: name
// (never the lab's cluster, which plans break and repair). It is the lab's
// own etcd binary, listening on 127.0.0.1 only, on two free ports the lab
// picks (never a lab member's 2379 or 2380), https with a certificate the
// lab's CA signs and client certificates required (--client-cert-auth).
// Its files are in StateStoreDir: data/, store.json (ports, pid, binary),
// etcd.pid, etcd.log, the server's certificate and the operator's client
// certificate. It runs in a session of its own: it outlives `lab up`, and
// StopStateStore and StartStateStore kill it and bring it back on the same
// data and ports (what a test of a store outage needs). Lab hosts cannot
// reach it: the commands that use it run on the operator machine.
const (
	// StateStorePrefix is the key prefix of the inventory's state: URL.
	StateStorePrefix = "etcd-rescue-lab"

	stateStoreSubdir = "state-store"
	stateStoreRecord = "store.json"
	// how long a start waits for the store to answer
	stateStoreReadyTimeout = 30 * time.Second
)

// ErrNoStateStore is returned by StateStoreOf when the lab has no state
// store (it was brought up without --state-store, or is down).
var ErrNoStateStore = errors.New("the lab has no state store")

// stateStoreRec is store.json: what a start on the same data needs.
type stateStoreRec struct {
	PID        int       `json:"pid"`
	ClientPort int       `json:"clientPort"` // https://127.0.0.1:ClientPort
	PeerPort   int       `json:"peerPort"`   // http://127.0.0.1:PeerPort, the single member's peer URL
	Bin        string    `json:"bin"`
	Started    time.Time `json:"started"`
}

// StateStoreInfo says where the lab's state store is and how to reach it.
type StateStoreInfo struct {
	URL      string // etcd://127.0.0.1:PORT/etcd-rescue-lab, as --state and state.url take it
	Endpoint string // 127.0.0.1:PORT
	Prefix   string // StateStorePrefix
	CAFile   string // the lab's CA (CACertPath), which signed the server's certificate
	CertFile string // the operator's client certificate
	KeyFile  string // its key
	PID      int    // of etcd (it may have exited since: see StateStoreStatus)
	Bin      string // the etcd binary
	Dir      string // StateStoreDir
	DataDir  string // Dir/data
	LogFile  string // Dir/etcd.log
}

// StateStoreDir is where the lab in labDir keeps its state store's files.
func StateStoreDir(labDir string) string { return filepath.Join(absDir(labDir), stateStoreSubdir) }

// absDir is dir made absolute: etcd runs in StateStoreDir, and its flags
// and the pid check name absolute paths.
func absDir(dir string) string {
	if a, err := filepath.Abs(dir); err == nil {
		return a
	}
	return dir
}

// StateStore returns the lab's state store, or nil when it was brought up
// without one.
func (l *Lab) StateStore() *StateStoreInfo {
	info, err := StateStoreOf(l.dir)
	if err != nil {
		return nil
	}
	return info
}

// StateStoreOf returns the state store of the lab in labDir (an error
// wrapping ErrNoStateStore when it has none), whether it runs or not.
func StateStoreOf(labDir string) (*StateStoreInfo, error) {
	labDir = absDir(labDir)
	dir := StateStoreDir(labDir)
	rec, err := readStoreRec(dir)
	if err != nil {
		return nil, err
	}
	ep := "127.0.0.1:" + strconv.Itoa(rec.ClientPort)
	return &StateStoreInfo{
		URL:      "etcd://" + ep + "/" + StateStorePrefix,
		Endpoint: ep,
		Prefix:   StateStorePrefix,
		CAFile:   filepath.Join(labDir, "pki", "ca.crt"),
		CertFile: filepath.Join(dir, "client.crt"),
		KeyFile:  filepath.Join(dir, "client.key"),
		PID:      rec.PID,
		Bin:      rec.Bin,
		Dir:      dir,
		DataDir:  filepath.Join(dir, "data"),
		LogFile:  filepath.Join(dir, "etcd.log"),
	}, nil
}

func readStoreRec(dir string) (*stateStoreRec, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateStoreRecord))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (no %s)", ErrNoStateStore, filepath.Join(dir, stateStoreRecord))
	}
	if err != nil {
		return nil, fmt.Errorf("state store: %w", err)
	}
	var rec stateStoreRec
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("state store: decode %s: %w", filepath.Join(dir, stateStoreRecord), err)
	}
	return &rec, nil
}

func writeStoreRec(dir string, rec *stateStoreRec) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("state store: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, stateStoreRecord), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "etcd.pid"), []byte(strconv.Itoa(rec.PID)+"\n"), 0o644)
}

// startStateStore makes the store's certificates and starts its etcd on
// fresh free ports, with the lab's etcd binary; it does not wait for it
// (waitStateStore does).
func (l *Lab) startStateStore() error {
	dir := StateStoreDir(l.dir)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return fmt.Errorf("state store: %w", err)
	}
	ca, err := l.loadCA()
	if err != nil {
		return fmt.Errorf("state store: %w", err)
	}
	crt, key, err := ca.issue("etcd-rescue lab state store", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		[]net.IP{net.ParseIP("127.0.0.1").To4(), net.IPv6loopback}, []string{"localhost"})
	if err != nil {
		return fmt.Errorf("state store: server certificate: %w", err)
	}
	ccrt, ckey, err := ca.issue("etcd-rescue operator (state store)", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil)
	if err != nil {
		return fmt.Errorf("state store: client certificate: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{"server.key", key, 0o600}, {"server.crt", crt, 0o644}, {"client.key", ckey, 0o600}, {"client.crt", ccrt, 0o644}} {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	client, peer, err := stateStorePorts()
	if err != nil {
		return err
	}
	rec := &stateStoreRec{ClientPort: client, PeerPort: peer, Bin: filepath.Join(l.BinDir(), "etcd")}
	return spawnStateStore(l.dir, rec)
}

// stateStorePorts picks two free ports on 127.0.0.1, never a lab
// member's client or peer port (nor the API server's): the store must not
// be mistaken for a member in a message or a URL.
func stateStorePorts() (client, peer int, err error) {
	for range 10 {
		ps, err := weedserver.FreePorts(2)
		if err != nil {
			return 0, 0, fmt.Errorf("state store: %w", err)
		}
		if !memberPort(ps[0]) && !memberPort(ps[1]) {
			return ps[0], ps[1], nil
		}
	}
	return 0, 0, fmt.Errorf("state store: no free ports other than the lab members' on 127.0.0.1")
}

func memberPort(p int) bool { return p == 2379 || p == 2380 || p == APIServerPort }

// stateStoreArgs are the store's etcd flags: one member on 127.0.0.1,
// client https with client certificates required, peer http on loopback
// (no other member ever joins it).
func stateStoreArgs(dir string, rec *stateStoreRec) []string {
	cu := "https://127.0.0.1:" + strconv.Itoa(rec.ClientPort)
	pu := "http://127.0.0.1:" + strconv.Itoa(rec.PeerPort)
	return []string{
		"--name=state-store",
		"--data-dir=" + filepath.Join(dir, "data"),
		"--listen-client-urls=" + cu,
		"--advertise-client-urls=" + cu,
		"--listen-peer-urls=" + pu,
		"--initial-advertise-peer-urls=" + pu,
		"--initial-cluster=state-store=" + pu,
		"--initial-cluster-state=new",
		"--initial-cluster-token=etcd-rescue-lab-state-store",
		"--cert-file=" + filepath.Join(dir, "server.crt"),
		"--key-file=" + filepath.Join(dir, "server.key"),
		"--trusted-ca-file=" + filepath.Join(filepath.Dir(dir), "pki", "ca.crt"),
		"--client-cert-auth",
		"--auto-compaction-mode=revision",
		"--auto-compaction-retention=1000",
	}
}

// spawnStateStore starts the store's etcd as rec says (ports, binary) and
// records its pid. It runs in a session of its own, so it outlives the
// process that started it.
func spawnStateStore(labDir string, rec *stateStoreRec) error {
	dir := StateStoreDir(labDir)
	args := stateStoreArgs(dir, rec)
	cmd := exec.Command(rec.Bin, args...)
	cmd.Dir = dir
	pid, err := startDetached(cmd, filepath.Join(dir, "etcd.log"))
	if err != nil {
		return fmt.Errorf("state store: %w", err)
	}
	rec.PID, rec.Started = pid, time.Now().UTC()
	return writeStoreRec(dir, rec)
}

// waitStateStore waits until the store answers /health over TLS with the
// operator's client certificate. An etcd that lost one of its ports to
// another process before it bound it is started again on other ports
// (twice at most) when newPorts is set (a first start: no inventory names
// the ports yet).
func waitStateStore(ctx context.Context, labDir string, newPorts bool) error {
	deadline := time.Now().Add(stateStoreReadyTimeout)
	restarts := 0
	for {
		info, err := StateStoreOf(labDir)
		if err != nil {
			return err
		}
		err = stateStoreHealth(ctx, info, deadline)
		if err == nil {
			return nil
		}
		tail := logTail(info.LogFile, 20)
		if errors.Is(err, errStoreExited) && newPorts && restarts < 2 && strings.Contains(tail, "address already in use") {
			restarts++
			rec, rerr := readStoreRec(info.Dir)
			if rerr != nil {
				return rerr
			}
			if rec.ClientPort, rec.PeerPort, rerr = stateStorePorts(); rerr != nil {
				return rerr
			}
			if rerr := spawnStateStore(labDir, rec); rerr != nil {
				return rerr
			}
			continue
		}
		return withOutput(fmt.Errorf("state store: etcd (pid %d) at %s: %w (log: %s)", info.PID, info.URL, err, info.LogFile), tail)
	}
}

var errStoreExited = errors.New("exited before it answered")

// stateStoreHealth asks /health until it says true, the etcd process is
// gone or the deadline passes.
func stateStoreHealth(ctx context.Context, info *StateStoreInfo, deadline time.Time) error {
	cli, err := stateStoreHTTP(info)
	if err != nil {
		return err
	}
	defer cli.CloseIdleConnections()
	var last error
	for {
		if !isStoreEtcd(info.PID, info.DataDir) {
			return errStoreExited
		}
		last = healthOnce(ctx, cli, info)
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no healthy answer within %s: %w", stateStoreReadyTimeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func healthOnce(ctx context.Context, cli *http.Client, info *StateStoreInfo) error {
	hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(hctx, http.MethodGet, "https://"+info.Endpoint+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := cli.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var h struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &h) != nil || h.Health != "true" {
		return fmt.Errorf("/health: %s %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// StateStoreTLS is the client TLS configuration of the lab's state store:
// the lab's CA and the operator's client certificate.
func StateStoreTLS(info *StateStoreInfo) (*tls.Config, error) {
	b, err := os.ReadFile(info.CAFile)
	if err != nil {
		return nil, fmt.Errorf("state store tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("state store tls: no certificate in %s", info.CAFile)
	}
	pair, err := tls.LoadX509KeyPair(info.CertFile, info.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("state store tls: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

func stateStoreHTTP(info *StateStoreInfo) (*http.Client, error) {
	tc, err := StateStoreTLS(info)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}, nil
}

// isStoreEtcd: pid is an etcd serving this store's data dir (a pid may
// have been reused by an unrelated process since).
func isStoreEtcd(pid int, dataDir string) bool {
	return runsWith(pid, "--data-dir="+dataDir)
}

// StopStateStore kills the state store of the lab in labDir (SIGKILL: an
// outage, not a shutdown) and returns once it is gone. Its data stays, for
// StartStateStore. A store that does not run is not an error.
func StopStateStore(labDir string) error {
	info, err := StateStoreOf(labDir)
	if err != nil {
		return err
	}
	return killStoreEtcd(info)
}

func killStoreEtcd(info *StateStoreInfo) error {
	if !isStoreEtcd(info.PID, info.DataDir) {
		return nil
	}
	return killPID(info.PID, "state store: etcd")
}

// StartStateStore starts the state store of the lab in labDir again on
// its data and its ports (the inventory names them) and returns once it
// answers; one that runs already is left as it is.
func StartStateStore(labDir string) error {
	info, err := StateStoreOf(labDir)
	if err != nil {
		return err
	}
	if isStoreEtcd(info.PID, info.DataDir) {
		return nil
	}
	rec, err := readStoreRec(info.Dir)
	if err != nil {
		return err
	}
	if err := spawnStateStore(labDir, rec); err != nil {
		return err
	}
	if err := waitStateStore(context.Background(), labDir, false); err != nil {
		return fmt.Errorf("%w\nhint: another process may hold port %d or %d now; lab status shows the store, lab down removes it", err, rec.ClientPort, rec.PeerPort)
	}
	return nil
}

// stopStateStore kills the store and deletes StateStoreDir with its data
// (lab down, a failed lab up).
func (l *Lab) stopStateStore() error {
	dir := StateStoreDir(l.dir)
	if info, err := StateStoreOf(l.dir); err == nil {
		if err := killStoreEtcd(info); err != nil {
			return err
		}
	} else if !errors.Is(err, ErrNoStateStore) {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("state store: remove %s: %w", dir, err)
	}
	return nil
}

// StateStoreStatus is the state store in Status.
type StateStoreStatus struct {
	URL string
	PID int
	// State: "up" (/health answers true over TLS), else "down: why"
	State string
}

func (l *Lab) stateStoreStatus(ctx context.Context) *StateStoreStatus {
	info := l.StateStore()
	if info == nil {
		return nil
	}
	st := &StateStoreStatus{URL: info.URL, PID: info.PID}
	if !isStoreEtcd(info.PID, info.DataDir) {
		st.State = fmt.Sprintf("down: etcd (pid %d) is not running (log: %s)", info.PID, info.LogFile)
		return st
	}
	cli, err := stateStoreHTTP(info)
	if err == nil {
		err = healthOnce(ctx, cli, info)
		cli.CloseIdleConnections()
	}
	if err != nil {
		st.State = "down: " + shortErr(err)
		return st
	}
	st.State = "up"
	return st
}

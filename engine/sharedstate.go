package engine

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate/etcdstate"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// A shared state store (runstate.Shared) holds a team's runs on a
// management etcd: --state etcd://HOST:PORT/PREFIX, or state: in the
// inventory. Apply and Resume then lock the cluster there, write every
// durable checkpoint there, and store the plan and inventory with the run
// so that resume works from another machine with only the URL.

// StatePasswordEnv holds the password of the state store's etcd user when
// it is given by --state (a URL never carries one).
const StatePasswordEnv = plans.StatePasswordEnv

// newSharedStore connects to a shared store; a variable for tests.
var newSharedStore = func(ctx context.Context, u plans.StateURL, password string) (runstate.Shared, error) {
	return etcdstate.Open(ctx, etcdstate.Config{Endpoints: u.Endpoints, Prefix: u.Prefix,
		CACert: u.CA, Cert: u.Cert, Key: u.Key, User: u.User, Password: password, LockTTL: u.LockTTL})
}

// StateError is a shared state store that cannot be used: a bad URL, one
// that overlaps the cluster being repaired, or one that does not answer.
type StateError struct {
	Where string
	Err   error
	Hint  string
	// Usage: the URL or section is wrong, or overlaps the cluster (exit 2);
	// otherwise the store does not answer (exit 4).
	Usage bool
}

func (e *StateError) Error() string {
	if e.Where == "" {
		return "state store: " + e.Err.Error()
	}
	return fmt.Sprintf("state store %s: %v", e.Where, e.Err)
}

func (e *StateError) Unwrap() error { return e.Err }

// stateOf says which shared store a session of plan p uses: the --state
// URL (Options.State), else the plan's or inventory's state: section; ok
// false for none (the state dir alone).
func stateOf(p *plans.Plan, flag string) (u plans.StateURL, password string, ok bool, err error) {
	if flag != "" {
		u, err = plans.ParseStateURL(flag)
		if err != nil {
			return u, "", false, &StateError{Err: err, Usage: true, Hint: "--state etcd://HOST:PORT[,HOST:PORT]/PREFIX[?cacert=FILE&cert=FILE&key=FILE&user=NAME]"}
		}
		return absFiles(u), os.Getenv(StatePasswordEnv), true, nil
	}
	if p == nil || p.State == nil {
		return u, "", false, nil
	}
	u, password, err = p.StateConfig()
	if err != nil {
		return u, "", false, &StateError{Err: err, Usage: true, Hint: "fix the state: section of the plan or inventory"}
	}
	if password == "" {
		password = os.Getenv(StatePasswordEnv)
	}
	return u, password, true, nil
}

// absFiles makes the TLS files of a --state URL absolute (relative to the
// working directory), as the run index records them.
func absFiles(u plans.StateURL) plans.StateURL {
	for _, f := range []*string{&u.CA, &u.Cert, &u.Key} {
		if *f != "" {
			if a, err := filepath.Abs(*f); err == nil {
				*f = a
			}
		}
	}
	return u
}

// StateURLString is u as a URL that reaches the store again, with its TLS
// files and user but never a password (the run index records it).
func StateURLString(u plans.StateURL) string {
	q := url.Values{}
	for k, v := range map[string]string{"cacert": u.CA, "cert": u.Cert, "key": u.Key, "user": u.User} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if u.LockTTL > 0 {
		q.Set("lockTTL", u.LockTTL.String())
	}
	s := u.String()
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}

// checkOverlap refuses a state store on the cluster being repaired: a
// recovery must never keep its own record in the etcd it takes down.
func checkOverlap(u plans.StateURL, p *plans.Plan) error {
	if p == nil || p.Cluster == nil {
		return nil
	}
	hosts := map[string]string{} // address -> what
	ports := map[string]string{} // host:port -> what
	for name, h := range p.Hosts {
		if h != nil {
			hosts[h.Address] = "host " + name
		}
	}
	for _, m := range p.Cluster.Members {
		for _, raw := range []string{m.ClientURL, m.PeerURL} {
			if mu, err := url.Parse(raw); err == nil && mu.Host != "" {
				ports[mu.Host] = "member " + m.Name + " (" + raw + ")"
			}
		}
	}
	for _, ep := range u.Endpoints {
		if what, ok := ports[ep]; ok {
			return &StateError{Where: u.String(), Err: fmt.Errorf("endpoint %s is %s of cluster %s, the cluster this plan repairs", ep, what, p.Cluster.Name),
				Usage: true, Hint: "keep the runs on a management etcd that is not part of the cluster being recovered"}
		}
		if host, _, err := net.SplitHostPort(ep); err == nil {
			if what, ok := hosts[host]; ok {
				return &StateError{Where: u.String(), Err: fmt.Errorf("endpoint %s is on %s of cluster %s, a machine this plan may stop or wipe", ep, what, p.Cluster.Name),
					Usage: true, Hint: "keep the runs on a management etcd outside the cluster's machines"}
			}
		}
	}
	return nil
}

// connectShared opens the shared store of a session of plan p, if it has
// one, and attaches it to store. The returned close is never nil.
func connectShared(ctx context.Context, store *runstate.Store, p *plans.Plan, flag string) (func(), error) {
	u, password, ok, err := stateOf(p, flag)
	if err != nil || !ok {
		return func() {}, err
	}
	if err := checkOverlap(u, p); err != nil {
		return func() {}, err
	}
	return attachShared(ctx, store, u, password)
}

func attachShared(ctx context.Context, store *runstate.Store, u plans.StateURL, password string) (func(), error) {
	sh, err := newSharedStore(ctx, u, password)
	if err != nil {
		return func() {}, &StateError{Where: u.String(), Err: err, Hint: "check that the management etcd runs and answers on its endpoints, and its TLS files and user"}
	}
	store.Shared, store.SharedURL = sh, StateURLString(u)
	return func() { _ = sh.Close() }, nil
}

// SharedWorkDir is the working directory on this machine of the runs of a
// shared store that were not started here ($XDG_STATE_HOME/etcd-rescue/work).
func SharedWorkDir() string {
	idx := runstate.IndexFile()
	if idx == "" {
		return filepath.Join(os.TempDir(), "etcd-rescue-work")
	}
	return filepath.Join(filepath.Dir(idx), "work")
}

// LocateRun finds run (the latest when "") for resume, status, report and
// unlock: in the shared store of stateURL when given (stateDir is then
// this machine's working directory, default SharedWorkDir), else as
// runstate.LocateRun does, connecting to the shared store the run index
// recorded for it. The returned close is never nil.
func LocateRun(ctx context.Context, stateURL, stateDir, run string) (*runstate.Store, string, func(), error) {
	none := func() {}
	if stateURL == "" {
		store, id, err := runstate.LocateRun(stateDir, run)
		if err != nil || store.SharedURL == "" {
			return store, id, none, err
		}
		u, err := plans.ParseStateURL(store.SharedURL)
		if err != nil {
			return nil, "", none, &StateError{Where: store.SharedURL, Err: err, Usage: true}
		}
		closeFn, err := attachShared(ctx, store, u, os.Getenv(StatePasswordEnv))
		return store, id, closeFn, err
	}
	store, closeFn, err := OpenState(ctx, stateURL, stateDir)
	if err != nil {
		return nil, "", none, err
	}
	if run == "" {
		if run, err = store.Latest(); err != nil {
			closeFn()
			return nil, "", none, err
		}
	}
	return store, run, closeFn, nil
}

// OpenState connects to the shared store at stateURL, with stateDir
// (default SharedWorkDir) as the working directory of its runs here.
func OpenState(ctx context.Context, stateURL, stateDir string) (*runstate.Store, func(), error) {
	none := func() {}
	u, err := plans.ParseStateURL(stateURL)
	if err != nil {
		return nil, none, &StateError{Err: err, Usage: true}
	}
	u = absFiles(u)
	if stateDir == "" {
		stateDir = SharedWorkDir()
	}
	store, err := runstate.OpenStore(stateDir)
	if err != nil {
		return nil, none, err
	}
	closeFn, err := attachShared(ctx, store, u, os.Getenv(StatePasswordEnv))
	if err != nil {
		return nil, none, err
	}
	return store, closeFn, nil
}

// materialize makes the plan and inventory a shared run began with
// readable on this machine: each file at its recorded path when it still
// holds those bytes (its relative paths then resolve as they did), else a
// copy written into the run's directory here (relative paths in it then
// resolve against that directory). It rewrites st.Plan and st.Inventory
// to what it chose, and says what it copied.
func materialize(store *runstate.Store, st *runstate.State) (note string, err error) {
	files, ok := store.RunFilesOf(st.RunID)
	if !ok || files.Plan == nil {
		return "", nil
	}
	dir := filepath.Join(store.Dir, "runs", st.RunID, "plan")
	var copied []string
	place := func(path string, want []byte, name string) (string, error) {
		if b, err := os.ReadFile(path); err == nil && string(b) == string(want) {
			return path, nil
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
		dst := filepath.Join(dir, name)
		if err := runstate.WriteFileAtomic(dst, want, 0o600); err != nil {
			return "", err
		}
		copied = append(copied, path)
		return dst, nil
	}
	if st.Plan, err = place(st.Plan, files.Plan, filepath.Base(st.Plan)); err != nil {
		return "", err
	}
	if st.Inventory != "" {
		if st.Inventory, err = place(st.Inventory, files.Inventory, "inventory-"+filepath.Base(st.Inventory)); err != nil {
			return "", err
		}
	}
	if len(copied) == 0 {
		return "", nil
	}
	return fmt.Sprintf("%s not on this machine as the run began with: read the copy the state store holds, written to %s (relative paths in it resolve there)",
		strings.Join(copied, " and "), dir), nil
}

// runFiles reads the plan and inventory files a new run records, as they
// are on disk (a reviewed plan's FILE.plan, not the YAML inside it).
func runFiles(planPath, inv string) (runstate.RunFiles, error) {
	var f runstate.RunFiles
	var err error
	if f.Plan, err = os.ReadFile(planPath); err != nil {
		return f, err
	}
	if inv != "" {
		if f.Inventory, err = os.ReadFile(inv); err != nil {
			return f, err
		}
	}
	return f, nil
}

// scopeOf is the run lock's scope in a shared store: the cluster's name.
func scopeOf(p *plans.Plan) string {
	if p == nil || p.Cluster == nil {
		return ""
	}
	return strings.TrimSpace(p.Cluster.Name)
}

package runstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// LockInfo says who holds a state dir's lock.
type LockInfo struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	User    string    `json:"user"`
	Started time.Time `json:"started"`
	RunID   string    `json:"runId"`
	Command string    `json:"command"`
	// Scope is what the lock covers in a shared store: the cluster's name.
	Scope string `json:"scope,omitempty"`
}

func (i *LockInfo) String() string {
	if i == nil {
		return "unknown holder"
	}
	return fmt.Sprintf("pid %d on %s, user %s, %s of run %s since %s", i.PID, i.Host, i.User, i.Command, i.RunID, i.Started.Format(time.RFC3339))
}

// LockedError is a state dir, or a cluster's lock in a shared state store,
// held by another apply or resume.
type LockedError struct {
	Dir   string // the state dir, or the shared store's Where
	Owner *LockInfo
	// Shared: Dir is a shared store and Scope the cluster whose lock is held.
	Shared bool
	Scope  string
}

func (e *LockedError) Error() string {
	if e.Shared {
		return fmt.Sprintf("cluster %s is locked in state store %s by another run: %s", e.Scope, e.Dir, e.Owner)
	}
	return fmt.Sprintf("state dir %s is locked by another run: %s", e.Dir, e.Owner)
}

// Lock is a held run lock: the state dir's flock, or a shared store's.
type Lock struct {
	f      *os.File
	shared SharedLock
}

// LockPath is the lock file of the store.
func (s *Store) LockPath() string { return filepath.Join(s.Dir, "lock") }

// Lock takes the state dir's lock with flock, so it is released by the
// kernel when the holder dies however it dies. The owner's details are
// written into the file for the next one to read.
func (s *Store) Lock(runID, command string) (*Lock, error) {
	f, err := os.OpenFile(s.LockPath(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner := readLockInfo(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &LockedError{Dir: s.Dir, Owner: owner}
		}
		return nil, fmt.Errorf("locking %s: %w", s.LockPath(), err)
	}
	host, _ := os.Hostname()
	uname := ""
	if u, err := user.Current(); err == nil {
		uname = u.Username
	}
	info := LockInfo{PID: os.Getpid(), Host: host, User: uname, Started: time.Now().UTC(), RunID: runID, Command: command}
	b, _ := json.Marshal(info)
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(append(b, '\n'), 0)
		if err == nil {
			_ = f.Sync()
		}
	}
	return &Lock{f: f}, nil
}

func readLockInfo(f *os.File) *LockInfo {
	b := make([]byte, 4096)
	n, _ := f.ReadAt(b, 0)
	var info LockInfo
	if n == 0 || json.Unmarshal([]byte(strings.TrimSpace(string(b[:n]))), &info) != nil {
		return nil
	}
	return &info
}

// Release empties the owner info and drops the lock.
func (l *Lock) Release() error {
	if l != nil && l.shared != nil {
		return l.shared.Release()
	}
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := l.f.Close() // closing the descriptor releases the flock
	l.f = nil
	return err
}

// Unlock removes the lock file of a holder that is gone. It refuses while
// the flock is held by a live process. It returns the previous owner's
// info, if any was left.
func (s *Store) Unlock() (*LockInfo, error) {
	f, err := os.OpenFile(s.LockPath(), os.O_RDWR, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	owner := readLockInfo(f)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return owner, &LockedError{Dir: s.Dir, Owner: owner}
		}
		return owner, err
	}
	if err := os.Remove(s.LockPath()); err != nil {
		return owner, err
	}
	return owner, syncDir(s.Dir)
}

// LockOwner returns the info in the lock file and whether a live process
// holds the lock.
func (s *Store) LockOwner() (*LockInfo, bool) {
	f, err := os.OpenFile(s.LockPath(), os.O_RDWR, 0o600)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	owner := readLockInfo(f)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return owner, true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return owner, false
}

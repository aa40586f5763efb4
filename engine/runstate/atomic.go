package runstate

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
)

// stateFile is a run's checkpoint; stateFile+durableSuffix the last durable
// one while state.json holds lazy writes (run.go writeLazy).
const (
	stateFile     = "state.json"
	durableSuffix = ".durable"
)

// WriteFileAtomic replaces path with data so that a reader (or a crash)
// sees either the old file or the new one, never a mix: temp file in the
// same directory, fsync, rename, fsync the directory.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	return replaceFile(path, data, mode, true)
}

// WriteFile replaces path with data like WriteFileAtomic, without the
// fsyncs: a reader, or a process killed at any point, sees the old file or
// the new one; a power loss may leave an empty or torn file where the
// filesystem commits the rename before the data.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	return replaceFile(path, data, mode, false)
}

func replaceFile(path string, data []byte, mode os.FileMode, durable bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp made it 0600: a chmod is one more metadata change, which
	// waits for the filesystem's journal when others fsync.
	if mode != 0o600 {
		if err := f.Chmod(mode); err != nil {
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if durable {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if !durable {
		return nil
	}
	return syncDir(dir)
}

// linkReplace makes dst another name of the file src (a hard link made
// under a temp name, then renamed over dst): metadata only, no data copied
// and no fsync.
func linkReplace(src, dst string) error {
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".link")
	_ = os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

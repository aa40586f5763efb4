package runstate

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// EvidenceDirName is the directory of a run that holds its evidence
// (runs/<id>/evidence/): the facts of the live cluster before and after each
// session, a copy of the journal, the evidence document and summary.md.
const EvidenceDirName = "evidence"

// Names of the files in the evidence dir.
const (
	EvidenceFactsBefore = "facts-before.json" // the first session's start
	EvidenceFactsAfter  = "facts-after.json"  // the end of the latest session
	EvidenceJournal     = "journal.jsonl"     // events.jsonl as it stood at the end of the latest session
	EvidenceDoc         = "evidence.json"     // kind etcd-rescue/evidence
	EvidenceSummary     = "summary.md"        // for humans
)

// EvidenceFactsSession is the facts file of session n's start (n >= 2).
func EvidenceFactsSession(n int) string {
	if n <= 1 {
		return EvidenceFactsBefore
	}
	return fmt.Sprintf("facts-session-%d.json", n)
}

// EvidenceDir is the evidence directory of run id.
func (s *Store) EvidenceDir(id string) string {
	return filepath.Join(s.runDir(id), EvidenceDirName)
}

// WriteEvidence writes one evidence file atomically (temp file, rename),
// with secrets redacted; name is a plain file name. SyncEvidence makes the
// files written so far durable, all at once.
func (r *Run) WriteEvidence(name string, data []byte) error {
	data = r.red.Bytes(data)
	if err := r.writeEvidenceLocal(name, data); err != nil {
		return err
	}
	// With a shared store, there too: a session on another machine adds
	// to it, and report there packs it.
	return r.sharedEvidence(name, data)
}

// writeEvidenceLocal writes an evidence file (data already redacted) in
// the evidence dir on this machine.
func (r *Run) writeEvidenceLocal(name string, data []byte) error {
	if name == "" || filepath.Base(name) != name || name == "." || name == ".." {
		return fmt.Errorf("evidence file name %q", name)
	}
	dir := r.store.EvidenceDir(r.ID())
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(dir, name)
	if err := WriteFile(path, data, 0o600); err != nil {
		return err
	}
	r.evMu.Lock()
	r.evUnsynced = append(r.evUnsynced, path)
	r.evMu.Unlock()
	return nil
}

// SyncEvidence fsyncs the evidence files written since the last call, at
// the same time (the filesystem commits them together: one wait, not one
// per file), then the evidence dir.
func (r *Run) SyncEvidence() error {
	r.evMu.Lock()
	paths := r.evUnsynced
	r.evUnsynced = nil
	r.evMu.Unlock()
	if len(paths) == 0 {
		return nil
	}
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Open(p)
			if err != nil {
				errs[i] = err
				return
			}
			defer f.Close()
			errs[i] = f.Sync()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return syncDir(r.store.EvidenceDir(r.ID()))
}

// WriteEvidenceJSON is WriteEvidence of v as indented JSON.
func (r *Run) WriteEvidenceJSON(name string, v any) error {
	b, err := marshalJSON(v, "  ")
	if err != nil {
		return err
	}
	return r.WriteEvidence(name, b)
}

// ReadEvidence reads an evidence file of the run ("" and no error when it
// does not exist).
func (r *Run) ReadEvidence(name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(r.store.EvidenceDir(r.ID()), name))
	if errors.Is(err, fs.ErrNotExist) {
		if r.store.Shared != nil && !r.storeFailed() {
			// Written by a session on another machine, perhaps.
			return r.store.sharedEvidenceFile(r.ID(), name)
		}
		return nil, nil
	}
	return b, err
}

// CopyJournal copies the journal into the evidence dir (redacted again:
// the journal is written redacted, and a copy must never be less so).
//
// With a shared store the copy is the store's journal, every session's on
// every machine; it stays on this machine (the store has the journal).
func (r *Run) CopyJournal() error {
	if r.store.Shared != nil {
		b, err := r.sharedJournal()
		if err != nil {
			return err
		}
		return r.writeEvidenceLocal(EvidenceJournal, r.red.Bytes(b))
	}
	b, err := os.ReadFile(r.store.EventsPath(r.ID()))
	if err != nil {
		return err
	}
	return r.WriteEvidence(EvidenceJournal, b)
}

// Bundle writes a tar.gz of run id's evidence dir and its state.json, for
// a postmortem. Everything in it was written redacted.
func (s *Store) Bundle(id string, w io.Writer) error {
	if !validRunID(id) {
		return &NoStateError{Dir: s.Dir, Run: id}
	}
	run := s.runDir(id)
	state := filepath.Join(run, stateFile)
	if _, err := os.Stat(state); err != nil {
		return &NoStateError{Dir: s.Dir, Run: id, Err: err}
	}
	files := []string{stateFile}
	if _, err := os.Stat(state + durableSuffix); err == nil {
		// The last durable checkpoint, while state.json holds lazy ones.
		files = append(files, stateFile+durableSuffix)
	}
	ents, err := os.ReadDir(s.EvidenceDir(id))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && e.Name()[0] != '.' {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		files = append(files, filepath.Join(EvidenceDirName, n))
	}
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	for _, f := range files {
		if err := addToTar(tw, filepath.Join(run, f), filepath.ToSlash(filepath.Join(id, f))); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func addToTar(tw *tar.Writer, path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: name, Mode: 0o600, Size: st.Size(), ModTime: st.ModTime().UTC().Truncate(time.Second), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.CopyN(tw, f, st.Size())
	return err
}

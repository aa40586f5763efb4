// Package reviewed owns the reviewed-plan document that `etcd-rescue plan
// FILE --out FILE.plan` writes and `apply FILE.plan` (and resume of a run
// started from one) reads: the plan and inventory bytes as they were
// reviewed (so nothing else is read to apply it), the dry-run text the
// reviewer read, and the facts of the live cluster the plan depends on.
//
// The document is JSON, versioned (Kind, Version), read strictly and
// bounded in size. Its integrity is checked against the plan hash it
// records; it is not signed: a hand-edited document whose hash was
// recomputed is caught only by the dry-run comparison at apply.
package reviewed

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/etcd-rescue/etcd-rescue/engine/facts"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/plans"
)

// Kind and Version identify the document.
const (
	Kind    = "etcd-rescue/reviewed-plan"
	Version = 1
)

// MaxSize caps what Read accepts: a document holds a plan, an inventory and
// a dry-run, a few hundred KiB for a large cluster.
const MaxSize = 32 << 20

// Ext is the usual file name extension of a reviewed plan.
const Ext = ".plan"

// Document is a reviewed plan.
type Document struct {
	Kind    string `json:"kind"`
	Version int    `json:"version"`
	// EtcdRescue is the version of etcd-rescue that wrote it.
	EtcdRescue string    `json:"etcdRescue"`
	Created    time.Time `json:"created"`
	Plan       File      `json:"plan"`
	// Inventory is nil when the plan had none.
	Inventory *File `json:"inventory,omitempty"`
	// PlanSHA256 is runstate.PlanHash of the plan and inventory bytes, the
	// hash a run records and resume checks.
	PlanSHA256 string `json:"planSHA256"`
	// DryRun is the dry-run text exactly as the reviewer read it (secret
	// values redacted).
	DryRun string `json:"dryRun"`
	// FactsTimeout is the per-host bound the facts were collected with;
	// apply collects again with the same.
	FactsTimeout facts.Duration `json:"factsTimeout"`
	// Facts are the facts the plan depends on, at review.
	Facts *facts.Subset `json:"facts"`
}

// File is one file of the plan as reviewed.
type File struct {
	// Given is the path as given on the command line (or in the plan's
	// inventory: key); Path is its absolute form, the directory relative
	// local paths in the file resolve against.
	Given string `json:"given"`
	Path  string `json:"path"`
	// FromFlag (inventory only): given with --inventory, so it replaces
	// the plan's own cluster:, hosts:, ssh:; otherwise named by the plan.
	FromFlag bool `json:"fromFlag,omitempty"`
	// Content is the file's bytes, as written (like the file, it holds
	// secret vars as written; nothing resolved is ever added).
	Content string `json:"content"`
}

// FormatError is a file that is not a readable reviewed plan (exit 2).
type FormatError struct {
	File string
	Msg  string
}

func (e *FormatError) Error() string { return e.File + ": " + e.Msg }

// IntegrityError is a document whose plan or inventory bytes do not match
// the hash it records: edited or damaged since review (exit 3).
type IntegrityError struct {
	File      string
	Want, Got string
}

func (e *IntegrityError) Error() string {
	return fmt.Sprintf("%s: the plan and inventory it holds do not match its hash (recorded sha256 %.12s, content %.12s): edited or damaged since review",
		e.File, e.Want, e.Got)
}

// New builds a document from a loaded plan (p.Raw, p.InvRaw are the bytes
// reviewed). planGiven and invGiven are the paths as given; invFromFlag
// says whether the inventory came from --inventory. dryRun is the text
// the reviewer read; sub the facts at review.
func New(p *plans.Plan, planGiven, invGiven string, invFromFlag bool, dryRun string, sub *facts.Subset, timeout time.Duration, version string, now time.Time) (*Document, error) {
	d := &Document{Kind: Kind, Version: Version, EtcdRescue: version, Created: now.UTC().Truncate(time.Second),
		PlanSHA256: runstate.PlanHash(p.Raw, p.InvRaw), DryRun: dryRun, Facts: sub, FactsTimeout: facts.Duration(timeout)}
	abs, err := filepath.Abs(p.File)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(p.Raw) {
		return nil, fmt.Errorf("%s is not UTF-8 text", p.File)
	}
	d.Plan = File{Given: planGiven, Path: abs, Content: string(p.Raw)}
	if p.InvRaw != nil {
		path := invGiven
		if !invFromFlag {
			path = plans.LocalFile(filepath.Dir(abs), p.Inventory)
		}
		if path, err = filepath.Abs(path); err != nil {
			return nil, err
		}
		if !utf8.Valid(p.InvRaw) {
			return nil, fmt.Errorf("%s is not UTF-8 text", path)
		}
		given := invGiven
		if !invFromFlag {
			given = p.Inventory
		}
		d.Inventory = &File{Given: given, Path: path, FromFlag: invFromFlag, Content: string(p.InvRaw)}
	}
	return d, nil
}

// Marshal is the document as written to a file.
func (d *Document) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Write writes the document to path (mode 0600: it holds the inventory),
// through a temporary file renamed into place.
func (d *Document) Write(path string) error {
	b, err := d.Marshal()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Sniff reports whether b looks like a reviewed plan, or like another
// etcd-rescue document (then kind says which): a JSON object whose kind
// starts with "etcd-rescue/". A YAML plan (even one in JSON flow style)
// has no kind: key.
func Sniff(b []byte) (isDoc bool, kind string) {
	t := bytes.TrimLeft(b, " \t\r\n\ufeff")
	if len(t) == 0 || t[0] != '{' {
		return false, ""
	}
	var head struct {
		Kind string `json:"kind"`
	}
	if json.Unmarshal(b, &head) != nil || !strings.HasPrefix(head.Kind, "etcd-rescue/") {
		return false, ""
	}
	return true, head.Kind
}

// IsFile reports whether path should be read as a reviewed plan: its name
// ends in .plan, or its content is an etcd-rescue document. An unreadable
// file is not one (the plan loader says why it cannot be read).
func IsFile(path string) bool {
	if strings.HasSuffix(path, Ext) {
		return true
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil || len(b) > MaxSize {
		return false
	}
	is, _ := Sniff(b)
	return is
}

// Read reads and checks a reviewed plan: size, kind, version, strict
// fields, and the integrity of the bytes it holds. Errors are a
// *FormatError (not a reviewed plan this etcd-rescue reads), an
// *IntegrityError, or an error reading the file.
func Read(path string) (*Document, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSize {
		return nil, &FormatError{path, fmt.Sprintf("larger than %d MiB: not a reviewed plan", MaxSize>>20)}
	}
	return Parse(path, b)
}

// Parse is Read for bytes in memory; path names them in errors.
func Parse(path string, b []byte) (*Document, error) {
	if len(b) > MaxSize {
		return nil, &FormatError{path, fmt.Sprintf("larger than %d MiB: not a reviewed plan", MaxSize>>20)}
	}
	var head struct {
		Kind    string `json:"kind"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, &FormatError{path, "not a reviewed plan (etcd-rescue plan --out writes them): " + jsonMsg(err)}
	}
	switch {
	case head.Kind == "":
		return nil, &FormatError{path, "not a reviewed plan: no kind"}
	case head.Kind != Kind:
		return nil, &FormatError{path, fmt.Sprintf("not a reviewed plan: kind %q, want %q", head.Kind, Kind)}
	case head.Version != Version:
		return nil, &FormatError{path, fmt.Sprintf("reviewed plan version %d; this etcd-rescue reads version %d", head.Version, Version)}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var d Document
	if err := dec.Decode(&d); err != nil {
		return nil, &FormatError{path, "bad reviewed plan: " + jsonMsg(err)}
	}
	var missing []string
	if d.Plan.Content == "" || d.Plan.Path == "" {
		missing = append(missing, "plan")
	}
	if d.Inventory != nil && d.Inventory.Path == "" {
		missing = append(missing, "inventory.path")
	}
	if d.PlanSHA256 == "" {
		missing = append(missing, "planSHA256")
	}
	if d.DryRun == "" {
		missing = append(missing, "dryRun")
	}
	if d.Facts == nil {
		missing = append(missing, "facts")
	}
	if len(missing) > 0 {
		return nil, &FormatError{path, "bad reviewed plan: missing " + strings.Join(missing, ", ")}
	}
	if !filepath.IsAbs(d.Plan.Path) || (d.Inventory != nil && !filepath.IsAbs(d.Inventory.Path)) {
		return nil, &FormatError{path, "bad reviewed plan: the plan and inventory paths must be absolute"}
	}
	if got := runstate.PlanHash(d.PlanBytes(), d.InventoryBytes()); got != d.PlanSHA256 {
		return nil, &IntegrityError{File: path, Want: d.PlanSHA256, Got: got}
	}
	return &d, nil
}

// PlanBytes and InventoryBytes are the files' bytes (nil: no inventory).
func (d *Document) PlanBytes() []byte { return []byte(d.Plan.Content) }

func (d *Document) InventoryBytes() []byte {
	if d.Inventory == nil {
		return nil
	}
	return []byte(d.Inventory.Content)
}

// LoadPlan rebuilds the plan from the bytes held, as if its files were
// read again from where they were at review: relative local paths (ssh
// identity, knownHosts, cluster.tls, snapshot files) resolve against the
// original plan and inventory directories. Nothing is read from disk.
func (d *Document) LoadPlan() (*plans.Plan, plans.Findings) {
	src := plans.Source{Path: d.Plan.Path, Raw: d.PlanBytes()}
	var inv *plans.Source
	fromFlag := false
	if d.Inventory != nil {
		inv = &plans.Source{Path: d.Inventory.Path, Raw: d.InventoryBytes()}
		fromFlag = d.Inventory.FromFlag
	}
	return plans.LoadSources(src, inv, fromFlag)
}

// FirstDifference is the first line where a and b differ, 1-based, with
// both lines ("" past the end); 0 when they are equal.
func FirstDifference(a, b string) (line int, la, lb string) {
	if a == b {
		return 0, "", ""
	}
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; ; i++ {
		var x, y string
		okx, oky := i < len(al), i < len(bl)
		if okx {
			x = al[i]
		}
		if oky {
			y = bl[i]
		}
		if x != y || okx != oky {
			return i + 1, x, y
		}
	}
}

func jsonMsg(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		// Not the message: it quotes the offending byte, and garbage is
		// not for a terminal.
		return fmt.Sprintf("not JSON (syntax error at byte %d)", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("%s is a JSON %s (at byte %d)", te.Field, te.Value, te.Offset)
	}
	return err.Error()
}

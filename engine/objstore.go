package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/internal/objstore"
	"github.com/etcd-rescue/etcd-rescue/plans"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// The plan's object store (its s3: section), for snapshot-save to:
// s3://... and snapshot-fetch, and the prepare phase: steps whose type
// implements steps.Prepares (snapshot-fetch) run, all of them, after the
// preflight and before any other step of the run.

// newObjectStore makes the client of the plan's object store (minio-go,
// see [objstore.New]). It is a variable so that tests can put a fake store
// behind it.
var newObjectStore = func(cfg objstore.Config) (objstore.Store, error) {
	c, err := objstore.New(cfg)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// StoreConfig is the objstore configuration of p's s3: section, with
// ${vars.NAME} expanded and ca: resolved against the file that defined it.
func StoreConfig(p *plans.Plan) (objstore.Config, error) {
	if p.S3 == nil {
		return objstore.Config{}, errors.New("the plan has no s3: section (endpoint, region, credentials of the object store)")
	}
	r, missing := p.S3.Resolved(p.Vars)
	if len(missing) > 0 {
		return objstore.Config{}, fmt.Errorf("s3: unresolved variable(s) %s", strings.Join(missing, ", "))
	}
	return objstore.Config{Endpoint: r.Endpoint, Region: r.Region, PathStyle: r.PathStyle, CAFile: plans.LocalFile(p.S3Base, r.CA),
		AccessKey: r.AccessKey, SecretKey: r.SecretKey, SessionToken: r.SessionToken}, nil
}

// storeLine describes the s3: section for the dry-run: where, and where
// the credentials come from (by name, never their values).
func storeLine(p *plans.Plan) string {
	s := p.S3
	ep := s.Endpoint
	if ep == "" {
		ep = "AWS S3"
	}
	r, _ := s.Resolved(p.Vars)
	line := fmt.Sprintf("%s, region %s", NewRedactor(p).String(ep), r.Region)
	if s.PathStyle {
		line += ", path-style"
	}
	if s.CA != "" {
		line += ", CA " + plans.LocalFile(p.S3Base, r.CA)
	}
	switch {
	case s.AccessKey == "":
		line += "; credentials from the AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials)"
	case len(plans.Refs(s.SecretKey)) > 0:
		line += "; credentials from " + strings.Join(append(plans.Refs(s.AccessKey), plans.Refs(s.SecretKey)...), " and ") + " (redacted)"
	default:
		line += "; credentials written in the file (redacted)"
	}
	return line
}

// usesStore reports whether a step of c reaches the object store.
func usesStore(c *Compiled) bool {
	for _, n := range c.Nodes {
		for _, t := range n.Targets {
			if u, ok := t.Params.(steps.UsesObjectStore); ok && u.UsesObjectStore() {
				return true
			}
		}
	}
	return false
}

// storePreflight checks, before anything runs, the local files the object
// store needs (s3.ca), when a step uses it.
func storePreflight(c *Compiled) error {
	if !usesStore(c) {
		return nil
	}
	cfg, err := StoreConfig(c.Plan)
	if err != nil {
		return &PrereqError{Problems: []string{err.Error()}}
	}
	if cfg.CAFile != "" {
		if _, err := os.Stat(cfg.CAFile); err != nil {
			return &PrereqError{Problems: []string{"s3.ca: " + err.Error()}}
		}
	}
	return nil
}

// storeOnce makes the store client once per session.
type storeOnce struct {
	once  sync.Once
	store objstore.Store
	err   error
}

func (w *walker) objectStore() (objstore.Store, error) {
	w.store.once.Do(func() {
		cfg, err := StoreConfig(w.c.Plan)
		if err == nil {
			w.store.store, err = newObjectStore(cfg)
		}
		w.store.err = err
	})
	return w.store.store, w.store.err
}

var _ steps.ObjectStoreEnv = (*stepEnv)(nil)

// ObjectStore is the plan's object store (steps.ObjectStoreEnv).
func (e *stepEnv) ObjectStore() (objstore.Store, error) { return e.w.objectStore() }

// prepares reports whether steps of type typ run in the prepare phase.
func prepares(typ *steps.Type) bool {
	p, ok := typ.New().(steps.Prepares)
	return ok && p.PreparesRun()
}

// prepareUnits are the step-hosts of the prepare phase.
func prepareUnits(units map[*Node][]*unit, c *Compiled) []*unit {
	var out []*unit
	for _, n := range c.Nodes {
		if prepares(n.Type) {
			out = append(out, units[n]...)
		}
	}
	return out
}

// recheckPrepared sends a prepare step-host done in an earlier session
// back to pending when its Check no longer holds (the fetched file is gone
// or changed): it runs again, with what it recorded (the same object).
func (w *walker) recheckPrepared(ctx context.Context, u *unit) {
	hs := w.hostState(u.n, u.t.Name())
	if hs.Status != runstate.StatusDone || checker(u.t) == nil {
		return
	}
	done, why, err := w.check(ctx, u.n, u.t)
	if done && err == nil {
		return
	}
	msg := "done earlier, but its result is gone: run again"
	if err != nil {
		msg += " (" + err.Error() + ")"
	} else if why != "" {
		msg += " (" + why + ")"
	}
	_ = w.transition(u.n, u.t.Name(), runstate.Lazy, func(h *runstate.HostState) {
		h.Status, h.Why, h.Error, h.Finished = runstate.StatusPending, msg, "", nil
	})
	w.out.line(runstate.Key(u.n.ID(), u.t.Name()), msg)
}

// rulePrepares: a step of the prepare phase runs before every other step,
// so it needs nothing and runs on no host.
func (c *Compiled) rulePrepares() plans.Findings {
	var fs plans.Findings
	for _, n := range c.Nodes {
		if !prepares(n.Type) {
			continue
		}
		if len(n.Step.Needs) > 0 {
			fs.Add(n.Step.At("needs"), "%s runs before every other step (before any host is touched): it cannot have needs:", n.Type.Name).ForStep(n.ID()).
				WithHint("drop needs:; steps that use its file run after it anyway")
		}
		if len(n.Step.On) > 0 {
			fs.Add(n.Step.At("on"), "%s runs on the operator machine: on: is not used", n.Type.Name).ForStep(n.ID()).
				WithHint("drop on:")
		}
	}
	return fs
}

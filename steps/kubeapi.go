package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// The two read-only steps of the Kubernetes side that talk to the API
// servers over HTTPS (kube.go has the stop and start of the control
// plane).

// KubeWaitReady waits until every API server of the control plane says it
// is ready (GET /readyz answers 200).
type KubeWaitReady struct {
	Within plans.Duration `yaml:"within" default:"5m" rescue:"positive" doc:"how long the API servers may take to be ready (their watch caches fill from etcd first)"`
}

func (*KubeWaitReady) UsesKubernetes() bool { return true }

func (s *KubeWaitReady) DefaultTimeout() (time.Duration, string) {
	return withinPlus(s.Within.D(), 1, time.Minute)
}

// readyPoll is how often a host that is not ready yet is asked again.
const readyPoll = 500 * time.Millisecond

// readyAttempt bounds one GET /readyz: an API server that accepts the
// connection but does not answer yet costs this much, not the whole wait.
const readyAttempt = 5 * time.Second

func (s *KubeWaitReady) Validate(c *Ctx, at At, fs *plans.Findings) {
	validateAPIServer(c, "kube-wait-ready", false, at, fs)
}

func (s *KubeWaitReady) Describe(c *Ctx, t Target) []Action {
	hosts := kubeHosts(c)
	within := s.Within.D()
	return []Action{{Kind: Wait, Cmd: fmt.Sprintf("wait up to %s until GET https://<host address>:%d/readyz answers 200 on %s (CA %s%s)",
		fmtDuration(within), apiPort(c), strings.Join(hosts, ", "), caShown(c), certShown(c)),
		Run: func(ctx context.Context, env Env) error {
			servers, err := apiServers(c, env, hosts)
			if err != nil {
				return err
			}
			return waitReady(ctx, env, servers, within)
		}}}
}

func apiPort(c *Ctx) int {
	if k := kubeOf(c); k != nil && k.APIServer != nil {
		return k.APIServer.Port
	}
	return 6443
}

func caShown(c *Ctx) string {
	if k := kubeOf(c); k != nil && k.APIServer != nil && k.APIServer.CA != "" {
		ca, _, _ := apiServerFiles(c)
		return ca
	}
	return "<not set>"
}

func certShown(c *Ctx) string {
	if k := kubeOf(c); k != nil && k.APIServer != nil && k.APIServer.Cert != "" {
		_, cert, _ := apiServerFiles(c)
		return ", client certificate " + cert
	}
	return ", anonymous"
}

// readyAnswer is one host's last answer to GET /readyz.
type readyAnswer struct {
	ok   bool
	last string // status and body, or the error
}

// askReady asks one API server GET /readyz once.
func askReady(ctx context.Context, a *apiServer) readyAnswer {
	ctx, cancel := context.WithTimeout(ctx, readyAttempt)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url("/readyz"), nil)
	if err != nil {
		return readyAnswer{last: err.Error()}
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return readyAnswer{last: oneLineErr(err)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return readyAnswer{ok: resp.StatusCode == http.StatusOK, last: fmt.Sprintf("HTTP %d: %s", resp.StatusCode, oneLine(string(body)))}
}

// oneLine squeezes a response body for a message: the failed checks of a
// /readyz answer are its lines starting with [-].
func oneLine(body string) string {
	body = strings.TrimSpace(body)
	var failed []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "[-]") {
			failed = append(failed, strings.TrimSpace(l))
		}
	}
	if len(failed) > 0 {
		body = strings.Join(failed, "; ")
	} else {
		body = strings.Join(strings.Fields(body), " ")
	}
	if len(body) > 300 {
		body = body[:300] + "..."
	}
	return body
}

// waitReady asks every API server until each has answered 200 once, up to
// within. The error names every host not ready with its last answer.
func waitReady(ctx context.Context, env Env, servers []*apiServer, within time.Duration) error {
	start := waitClock.Now()
	last := map[string]readyAnswer{}
	pending := servers
	for {
		var still []*apiServer
		for _, a := range pending {
			ans := askReady(ctx, a)
			if ctx.Err() != nil {
				return fmt.Errorf("%w: %s", ctx.Err(), notReady(pending, last))
			}
			if prev, seen := last[a.host]; !seen || prev.last != ans.last {
				env.Logf("%s (%s) /readyz: %s", a.host, a.addr, ans.last)
			}
			last[a.host] = ans
			if !ans.ok {
				still = append(still, a)
			}
		}
		pending = still
		if len(pending) == 0 {
			return nil
		}
		if waitClock.Now().Sub(start) >= within {
			return fmt.Errorf("API servers not ready after %s: %s", fmtDuration(within), notReady(pending, last))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s", ctx.Err(), notReady(pending, last))
		case <-waitClock.After(readyPoll):
		}
	}
}

func notReady(pending []*apiServer, last map[string]readyAnswer) string {
	var parts []string
	for _, a := range pending {
		l := last[a.host].last
		if l == "" {
			l = "not asked yet"
		}
		parts = append(parts, a.host+" ("+a.addr+"): "+l)
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// KubeVerifyRelist proves that Kubernetes clients must relist after the
// restore: a watch from the newest revision seen before the run changed
// anything is answered 410 Gone by every API server. Informers, kubelets
// and controllers then throw their caches away and list again; a watch
// that is served from that revision instead means they keep caches that
// may describe objects the restore took back in time.
type KubeVerifyRelist struct {
	Namespace string         `yaml:"namespace" default:"default" doc:"namespace of the ConfigMaps watched"`
	Resource  string         `yaml:"resource" doc:"API path of another collection to watch, e.g. /apis/apps/v1/namespaces/kube-system/deployments (instead of the namespace's ConfigMaps)"`
	Within    plans.Duration `yaml:"within" default:"1m" rescue:"positive" doc:"how long an API server that cannot be reached is asked again"`
}

func (*KubeVerifyRelist) UsesKubernetes() bool { return true }

// NeedsBumpedRestore: see [NeedsBumpedRestore].
func (*KubeVerifyRelist) NeedsBumpedRestore() string {
	return "kube-verify-relist proves what a restore with bumpRevision (auto, or a number) and --mark-compacted does; " +
		"put the restore in the plan before it (in its needs:, directly or through other steps)"
}

func (s *KubeVerifyRelist) DefaultTimeout() (time.Duration, string) {
	return withinPlus(s.Within.D(), 1, time.Minute)
}

// relistSilence is how long the watch may stay open without an answer:
// the API server sends the 410 at once; a watch still open after this was
// accepted, so the old revisions are still served.
const relistSilence = 5 * time.Second

// relistRetry is the pause before an API server that could not be asked
// is asked again.
const relistRetry = time.Second

func (s *KubeVerifyRelist) collection() string {
	if s.Resource != "" {
		return s.Resource
	}
	return "/api/v1/namespaces/" + url.PathEscape(s.Namespace) + "/configmaps"
}

// watchPath is the watch request from revision rev.
func (s *KubeVerifyRelist) watchPath(rev string) string {
	return s.collection() + "?watch=1&resourceVersion=" + rev + "&timeoutSeconds=" + strconv.Itoa(int(relistSilence/time.Second))
}

func (s *KubeVerifyRelist) Validate(c *Ctx, at At, fs *plans.Findings) {
	validateAPIServer(c, "kube-verify-relist", true, at, fs)
	if s.Resource != "" {
		if !strings.HasPrefix(s.Resource, "/api/") && !strings.HasPrefix(s.Resource, "/apis/") || strings.ContainsAny(s.Resource, "?# ") {
			fs.Add(at("resource"), "resource %q is not an API collection path like /api/v1/namespaces/default/configmaps", s.Resource)
		}
	}
}

func (s *KubeVerifyRelist) Describe(c *Ctx, t Target) []Action {
	hosts := kubeHosts(c)
	return []Action{{Kind: Wait, Cmd: fmt.Sprintf("on %s: GET https://<host address>:%d%s (client certificate %s) must answer 410 Gone (HTTP 410, or a watch event ERROR with code 410): clients relist after the restore",
		strings.Join(hosts, ", "), apiPort(c), s.watchPath("<"+FactPreRevision+">"), certFile(c)),
		Run: func(ctx context.Context, env Env) error {
			rev, ok := env.Fact(FactPreRevision)
			if n, err := strconv.ParseInt(rev, 10, 64); !ok || err != nil || n <= 0 {
				return fmt.Errorf("no revision was recorded before the run changed anything (%s): there is no watch to start from; add check-quorum before the first stop, or restore with bumpRevision: auto (it records it)", FactPreRevision)
			}
			servers, err := apiServers(c, env, hosts)
			if err != nil {
				return err
			}
			return s.verifyAll(ctx, env, servers, rev)
		}}}
}

func certFile(c *Ctx) string {
	if k := kubeOf(c); k != nil && k.APIServer != nil && k.APIServer.Cert != "" {
		_, cert, _ := apiServerFiles(c)
		return cert
	}
	return "<not set>"
}

// verifyAll asks every API server; every one must answer 410.
func (s *KubeVerifyRelist) verifyAll(ctx context.Context, env Env, servers []*apiServer, rev string) error {
	var bad []string
	for _, a := range servers {
		res := s.verifyOne(ctx, env, a, rev)
		if res.err != nil {
			bad = append(bad, a.host+" ("+a.addr+"): "+res.err.Error())
			continue
		}
		env.Logf("%s: the watch from revision %s is answered 410 Gone (%s): clients relist", a.host, rev, res.how)
	}
	if len(bad) == 0 {
		return nil
	}
	return &RelistError{Revision: rev, Hosts: bad}
}

// RelistError: an API server did not answer a watch from the pre-restore
// revision with 410 Gone.
type RelistError struct {
	Revision string
	Hosts    []string
}

func (e *RelistError) Error() string {
	return fmt.Sprintf("a watch from revision %s (the newest before the restore) is not answered 410 Gone: clients and controllers would NOT relist and may act on stale caches:\n  %s\n"+
		"hint: restore with a revision bump and --mark-compacted (restore bumpRevision: auto), and stop every API server before the restore",
		e.Revision, strings.Join(e.Hosts, "\n  "))
}

type relistResult struct {
	how string // how the 410 came
	err error  // not a 410, or could not ask
}

// errNotAsked marks an answer that says nothing about the revisions (no
// connection, a 5xx): the API server is asked again until within.
var errNotAsked = errors.New("could not ask")

func (s *KubeVerifyRelist) verifyOne(ctx context.Context, env Env, a *apiServer, rev string) relistResult {
	start := waitClock.Now()
	for {
		res := s.watchOnce(ctx, a, rev)
		if !errors.Is(res.err, errNotAsked) {
			return res
		}
		if ctx.Err() != nil || waitClock.Now().Sub(start) >= s.Within.D() {
			return res
		}
		env.Logf("%s: %v; asking again", a.host, res.err)
		select {
		case <-ctx.Done():
			return res
		case <-waitClock.After(relistRetry):
		}
	}
}

// watchOnce opens the watch and reads its answer.
func (s *KubeVerifyRelist) watchOnce(ctx context.Context, a *apiServer, rev string) relistResult {
	ctx, cancel := context.WithTimeout(ctx, relistSilence+5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url(s.watchPath(rev)), nil)
	if err != nil {
		return relistResult{err: err}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return relistResult{err: fmt.Errorf("%w: %s", errNotAsked, oneLineErr(err))}
	}
	defer resp.Body.Close()
	return relistAnswer(resp.StatusCode, resp.Body)
}

// watchEvent is one event of a watch stream; Object is a Status for ERROR.
type watchEvent struct {
	Type   string `json:"type"`
	Object struct {
		Kind     string `json:"kind"`
		Code     int    `json:"code"`
		Reason   string `json:"reason"`
		Message  string `json:"message"`
		Metadata struct {
			Name            string `json:"name"`
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	} `json:"object"`
}

// status is a Kubernetes Status body (an HTTP error answer).
type status struct {
	Kind    string `json:"kind"`
	Code    int    `json:"code"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// relistAnswer decides what an answer to the watch from the pre-restore
// revision proves. 410 Gone, as the HTTP status or as the first event
// (ERROR with a Status of code 410), is the proof. Any event streamed from
// that revision, or a watch that stays open, means the old history is
// still served.
func relistAnswer(code int, body io.Reader) relistResult {
	switch {
	case code == http.StatusGone:
		var st status
		b, _ := io.ReadAll(io.LimitReader(body, 64<<10))
		_ = json.Unmarshal(b, &st)
		return relistResult{how: "HTTP 410" + statusText(st.Reason, st.Message)}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		var st status
		b, _ := io.ReadAll(io.LimitReader(body, 64<<10))
		_ = json.Unmarshal(b, &st)
		return relistResult{err: fmt.Errorf("the API server refused the watch (HTTP %d%s): the identity of apiServer.cert needs list and watch on the collection, so nothing is proven", code, statusText(st.Reason, st.Message))}
	case code >= 500 || code == http.StatusTooManyRequests:
		b, _ := io.ReadAll(io.LimitReader(body, 4096))
		return relistResult{err: fmt.Errorf("%w: HTTP %d: %s", errNotAsked, code, oneLine(string(b)))}
	case code != http.StatusOK:
		b, _ := io.ReadAll(io.LimitReader(body, 4096))
		return relistResult{err: fmt.Errorf("HTTP %d: %s", code, oneLine(string(b)))}
	}
	dec := json.NewDecoder(body)
	var ev watchEvent
	if err := dec.Decode(&ev); err != nil {
		if errors.Is(err, io.EOF) || isTimeout(err) {
			return relistResult{err: fmt.Errorf("the API server accepted the watch from that revision and sent nothing for %s: it still serves the old history", relistSilence)}
		}
		return relistResult{err: fmt.Errorf("%w: reading the watch: %s", errNotAsked, oneLineErr(err))}
	}
	switch ev.Type {
	case "ERROR":
		if ev.Object.Code == http.StatusGone {
			return relistResult{how: "watch event ERROR, code 410" + statusText(ev.Object.Reason, ev.Object.Message)}
		}
		return relistResult{err: fmt.Errorf("the watch ended with ERROR code %d%s, not 410 Gone", ev.Object.Code, statusText(ev.Object.Reason, ev.Object.Message))}
	default:
		return relistResult{err: fmt.Errorf("the API server streamed events from that revision (first: %s %s at resourceVersion %s): the old history is still served",
			ev.Type, ev.Object.Metadata.Name, ev.Object.Metadata.ResourceVersion)}
	}
}

func statusText(reason, msg string) string {
	switch {
	case reason != "" && msg != "":
		return fmt.Sprintf(", %s: %s", reason, msg)
	case msg != "":
		return ": " + msg
	case reason != "":
		return ", " + reason
	}
	return ""
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &te) && te.Timeout()
}

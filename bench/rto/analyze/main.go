// Command analyze prints the report of `make bench-rto` from the results
// TSV of bench/rto/run-rto.sh and the per-run logs beside it (logs/):
// the median wall of each contender per scenario, the ratios, the
// critical-path limit computed from the runbook's per-command times (B's
// steps.tsv), each goal of the benchmark met or not, and where etcd-rescue's
// time goes (its state.json per step, its "engine time" line).
//
//	go run ./bench/rto/analyze DIR/rto.tsv
//
// Exit 0 when every run recovered (exit 0) and passed lab verify, 1 when
// one did not (the report marks it), 2 when the input cannot be read.
package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
)

// Run is one line of the results TSV.
type Run struct {
	Scenario, Contender, Run, Keys, Prefix, RC, Started string
	Wall                                                float64 // NaN when the run did not get to the recovery
	VerifyOK                                            bool
}

// OK: the recovery command exited 0 and lab verify passed after it.
func (r Run) OK() bool { return r.RC == "0" && r.VerifyOK && !math.IsNaN(r.Wall) }

func (r Run) why() string {
	switch {
	case math.IsNaN(r.Wall):
		return r.RC
	case r.RC != "0" && !r.VerifyOK:
		return "exit " + r.RC + ", verify FAILED"
	case r.RC != "0":
		return "exit " + r.RC
	case !r.VerifyOK:
		return "verify FAILED"
	}
	return ""
}

type group struct{ scenario, keys, contender string }

type report struct {
	w      io.Writer
	logs   string
	runs   []Run
	groups map[group][]Run
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: analyze DIR/rto.tsv   (the per-run logs in DIR/logs)")
		os.Exit(2)
	}
	runs, err := readRuns(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "analyze:", err)
		os.Exit(2)
	}
	rep := &report{w: os.Stdout, logs: filepath.Join(filepath.Dir(os.Args[1]), "logs"), runs: runs, groups: map[group][]Run{}}
	for _, r := range runs {
		g := group{r.Scenario, r.Keys, r.Contender}
		rep.groups[g] = append(rep.groups[g], r)
	}
	if meta, err := os.ReadFile(filepath.Join(filepath.Dir(os.Args[1]), "meta.txt")); err == nil {
		fmt.Printf("```\n%s```\n\n", meta)
	}
	failed := rep.print()
	if failed > 0 {
		os.Exit(1)
	}
}

func readRuns(path string) ([]Run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.Comma = '\t'
	cr.LazyQuotes = true
	recs, err := cr.ReadAll()
	if err != nil {
		return nil, err
	}
	if len(recs) < 1 {
		return nil, fmt.Errorf("%s: empty", path)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, h := range []string{"scenario", "contender", "run", "wall_s", "verify_ok", "rc", "keys", "log_prefix"} {
		if _, ok := col[h]; !ok {
			return nil, fmt.Errorf("%s: no column %s", path, h)
		}
	}
	var out []Run
	for _, rec := range recs[1:] {
		if len(rec) < len(recs[0]) {
			continue
		}
		r := Run{Scenario: rec[col["scenario"]], Contender: rec[col["contender"]], Run: rec[col["run"]], Keys: rec[col["keys"]],
			Prefix: rec[col["log_prefix"]], RC: rec[col["rc"]], VerifyOK: rec[col["verify_ok"]] == "1", Wall: math.NaN()}
		if w, err := strconv.ParseFloat(rec[col["wall_s"]], 64); err == nil {
			r.Wall = w
		}
		out = append(out, r)
	}
	return out, nil
}

// scenarios in the order of the report: (scenario, keys) pairs.
func (rep *report) scenarios() [][2]string {
	seen := map[[2]string]bool{}
	var out [][2]string
	for _, r := range rep.runs {
		k := [2]string{r.Scenario, r.Keys}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	order := map[string]int{"total-loss": 0, "quorum-loss": 1, "lost-host": 2}
	sort.SliceStable(out, func(i, j int) bool {
		ki, _ := strconv.Atoi(out[i][1])
		kj, _ := strconv.Atoi(out[j][1])
		if ki != kj {
			return ki < kj
		}
		return order[out[i][0]] < order[out[j][0]]
	})
	return out
}

// median wall of a contender's OK runs, and how many of its runs were OK.
func (rep *report) median(scenario, keys, contender string) (med float64, ok, n int) {
	var ws []float64
	for _, r := range rep.groups[group{scenario, keys, contender}] {
		n++
		if r.OK() {
			ok++
			ws = append(ws, r.Wall)
		}
	}
	if ok == 0 {
		return math.NaN(), 0, n
	}
	return Median(ws), ok, n
}

func f2(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "–"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64) + "×"
}

// cell is a contender's median, with "(k/n ok)" when a run failed.
func (rep *report) cell(s, k, c string) string {
	m, ok, n := rep.median(s, k, c)
	if n == 0 {
		return "not run"
	}
	if ok < n {
		return fmt.Sprintf("%s (%d/%d ok)", f2(m), ok, n)
	}
	return f2(m)
}

// aRoutes are the contender names of etcd-rescue in a scenario.
func (rep *report) aRoutes(s, k string) []string {
	var out []string
	for _, c := range []string{"A", "A-fnc", "A-snap"} {
		if len(rep.groups[group{s, k, c}]) > 0 {
			out = append(out, c)
		}
	}
	return out
}

// limits are the critical paths of B's OK runs of a scenario: with B's
// measured times (one new SSH connection per command) and without the
// connection cost (each command minus the median `ssh h1 true` of the run).
type limits struct {
	conn, noConn, sshTrue []float64
	rows                  []string
}

func (rep *report) limits(s, k string) limits {
	var l limits
	for _, r := range rep.groups[group{s, k, "B"}] {
		if !r.OK() {
			continue
		}
		sf, err := os.Open(filepath.Join(rep.logs, r.Prefix+".steps.tsv"))
		if err != nil {
			continue
		}
		cmds, err := ParseSteps(sf)
		sf.Close()
		if err != nil {
			continue
		}
		cost := math.NaN()
		if b, err := os.ReadFile(filepath.Join(rep.logs, r.Prefix+".sshcost.tsv")); err == nil {
			var xs []float64
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				f := strings.Split(line, "\t")
				if len(f) == 3 && f[2] == "0" {
					if x, err := strconv.ParseFloat(f[1], 64); err == nil {
						xs = append(xs, x)
					}
				}
			}
			if len(xs) > 0 {
				cost = Median(xs)
			}
		}
		p, err := CriticalPath(s, cmds, 0)
		if err != nil {
			continue
		}
		l.conn = append(l.conn, p.Limit)
		nc := math.NaN()
		if !math.IsNaN(cost) {
			q, _ := CriticalPath(s, cmds, cost)
			nc = q.Limit
			l.noConn = append(l.noConn, nc)
			l.sshTrue = append(l.sshTrue, cost)
		}
		l.rows = append(l.rows, fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %d / %d | %s |", s, k, r.Run, f2(r.Wall), f2(cost), f2(p.Limit), p.Cmds, len(cmds), strings.Join(p.Chain, " → "))+" "+f2(nc)+" |")
	}
	return l
}

func medOrNaN(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return Median(xs)
}

// EngineLine is etcd-rescue's closing "engine time: X s (Y% of Z s wall)".
type EngineLine struct{ Sec, Pct, Wall float64 }

var engineRE = regexp.MustCompile(`(?m)^\s*engine time: ([0-9.]+) ?s \(([0-9.]+)% of ([0-9.]+) ?s wall\)`)

func parseEngineLine(out string) (EngineLine, bool) {
	m := engineRE.FindAllStringSubmatch(out, -1)
	if m == nil {
		return EngineLine{}, false
	}
	last := m[len(m)-1]
	var e EngineLine
	e.Sec, _ = strconv.ParseFloat(last[1], 64)
	e.Pct, _ = strconv.ParseFloat(last[2], 64)
	e.Wall, _ = strconv.ParseFloat(last[3], 64)
	return e, true
}

// engineShare is the largest share of the engine's own time over a
// contender's runs, and whether every run printed it.
func (rep *report) engineShare(s, k, c string) (max float64, all bool, any bool) {
	all = true
	for _, r := range rep.groups[group{s, k, c}] {
		b, err := os.ReadFile(filepath.Join(rep.logs, r.Prefix+".out.txt"))
		e, ok := parseEngineLine(string(b))
		if err != nil || !ok {
			all = false
			continue
		}
		any = true
		if e.Pct > max {
			max = e.Pct
		}
	}
	return max, all, any
}

func (rep *report) shareCell(s, k, c string) string {
	m, all, any := rep.engineShare(s, k, c)
	switch {
	case !any:
		return "n/a"
	case !all:
		return fmt.Sprintf("%.1f%% (some runs n/a)", m)
	}
	return fmt.Sprintf("%.1f%%", m)
}

func (rep *report) print() (failed int) {
	w := rep.w
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	scen := rep.scenarios()
	lims := map[[2]string]limits{}
	for _, sk := range scen {
		lims[sk] = rep.limits(sk[0], sk[1])
	}

	p("## Medians and ratios (wall seconds of the recovery command; runs that failed are left out of the medians)\n")
	p("limit = the critical path of the runbook's commands (B's per-command times, every host in parallel, each host's commands in order):")
	p("\"conn\" as B ran them, a new SSH connection per command; \"no conn\" minus the cost of `ssh h1 true` measured in the same run.\n")
	p("| scenario | keys | A = | A | B by hand | C Ansible | B/A | C/A | limit conn / no conn (s) | A/limit conn / no conn | engine time, max share |")
	p("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, sk := range scen {
		s, k := sk[0], sk[1]
		b, _, _ := rep.median(s, k, "B")
		c, _, _ := rep.median(s, k, "C")
		l := lims[sk]
		lc, ln := medOrNaN(l.conn), medOrNaN(l.noConn)
		for _, ac := range rep.aRoutes(s, k) {
			a, _, _ := rep.median(s, k, ac)
			route := map[string]string{"A": "etcd-rescue", "A-fnc": "A-fnc: force-new-cluster", "A-snap": "A-snap: survivor's snapshot"}[ac]
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s |", s, k, route, rep.cell(s, k, ac), rep.cell(s, k, "B"), rep.cell(s, k, "C"),
				ratio(b, a), ratio(c, a), f2(lc), f2(ln), ratio(a, lc), ratio(a, ln), rep.shareCell(s, k, ac))
		}
	}

	p("\n## Goals (medians)\n")
	for _, g := range rep.goals(lims) {
		p("- %s", g)
	}

	p("\n## Every run\n")
	p("| scenario | keys | contender | ok | median | min–max | each run (s) |")
	p("|---|---|---|---|---|---|---|")
	var fails []string
	for _, sk := range scen {
		for _, c := range []string{"A", "A-fnc", "A-snap", "B", "C"} {
			rs := rep.groups[group{sk[0], sk[1], c}]
			if len(rs) == 0 {
				continue
			}
			var each []string
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, r := range rs {
				x := f2(r.Wall)
				if !r.OK() {
					x += " (" + r.why() + ")"
					fails = append(fails, fmt.Sprintf("%s %s keys %s run %s: %s; logs %s.*", sk[0], sk[1], c, r.Run, r.why(), filepath.Join(rep.logs, r.Prefix)))
				} else {
					lo, hi = math.Min(lo, r.Wall), math.Max(hi, r.Wall)
				}
				each = append(each, x)
			}
			m, ok, n := rep.median(sk[0], sk[1], c)
			rng := "–"
			if ok > 0 {
				rng = f2(lo) + "–" + f2(hi)
			}
			p("| %s | %s | %s | %d/%d | %s | %s | %s |", sk[0], sk[1], c, ok, n, f2(m), rng, strings.Join(each, ", "))
		}
	}
	if len(fails) > 0 {
		p("\n**FAILED runs** (left out of the medians):\n")
		for _, f := range fails {
			p("- %s", f)
		}
	}

	p("\n## Critical path of the runbook (B's runs)\n")
	p("Dependencies between hosts: total loss, health waits for every start; quorum loss, a member's start waits for its member add,")
	p("the next member add for the previous start, health for every start; lost host, start waits for member add, health for start.")
	p("Failed polls (etcd not ready yet) and the `sleep 1` between them are left out.\n")
	p("| scenario | keys | B run | B wall (s) | ssh h1 true (s) | limit conn (s) | commands counted / run (failed polls out) | the chain | limit no conn (s) |")
	p("|---|---|---|---|---|---|---|---|---|")
	for _, sk := range scen {
		for _, row := range lims[sk].rows {
			p("%s", row)
		}
	}

	p("\n## Where etcd-rescue's time goes (its median run per route, from state.json)\n")
	p("engine/ssh/api summed over a step's hosts (they run in parallel); other = engine − ssh − api (the engine's own work and its poll pauses);")
	p("span = first host started → last host finished, from the run's start.\n")
	for _, sk := range scen {
		for _, ac := range rep.aRoutes(sk[0], sk[1]) {
			rep.stepTable(sk[0], sk[1], ac)
		}
	}

	p("## B: seconds per command kind (summed over hosts, failed polls included; median over runs)\n")
	for _, sk := range scen {
		rep.bKinds(sk[0], sk[1])
	}
	p("\n## C: Ansible's own time\n")
	p("wall − the playbook time profile_tasks reports (interpreter start, inventory and playbook load, exit).\n")
	for _, sk := range scen {
		rep.cOverhead(sk[0], sk[1])
	}
	for _, r := range rep.runs {
		if !r.OK() {
			failed++
		}
	}
	return failed
}

// goals of issue 12, each met or NOT met on the medians.
func (rep *report) goals(lims map[[2]string]limits) []string {
	var out []string
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	add := func(name string, x, bound float64, le bool, what string) {
		if math.IsNaN(x) {
			out = append(out, fmt.Sprintf("%s: not measured (%s)", name, what))
			return
		}
		ok := x <= bound
		op := "≤"
		if !le {
			ok = x >= bound
			op = "≥"
		}
		out = append(out, fmt.Sprintf("%s: %.2f %s %.2f — **%s** (%s)", name, x, op, bound, verdict(ok), what))
	}
	div := func(a, b float64) float64 {
		if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
			return math.NaN()
		}
		return a / b
	}
	for _, keys := range []string{"10000", "200000"} {
		s := "total-loss"
		if len(rep.groups[group{s, keys, "A"}]) == 0 {
			continue
		}
		a, _, _ := rep.median(s, keys, "A")
		b, _, _ := rep.median(s, keys, "B")
		c, _, _ := rep.median(s, keys, "C")
		l := lims[[2]string{s, keys}]
		lc, ln := medOrNaN(l.conn), medOrNaN(l.noConn)
		add(fmt.Sprintf("total loss %s keys, A / critical-path limit (a new SSH connection per command)", keys), div(a, lc), 1.3, true, fmt.Sprintf("A %s s, limit %s s", f2(a), f2(lc)))
		add(fmt.Sprintf("total loss %s keys, A / critical-path limit (without connection cost)", keys), div(a, ln), 1.3, true, fmt.Sprintf("A %s s, limit %s s", f2(a), f2(ln)))
		add(fmt.Sprintf("total loss %s keys, B/A (by hand)", keys), div(b, a), 3, false, fmt.Sprintf("B %s s, A %s s", f2(b), f2(a)))
		if len(rep.groups[group{s, keys, "C"}]) > 0 || keys == "10000" {
			add(fmt.Sprintf("total loss %s keys, C/A (Ansible)", keys), div(c, a), 3, false, fmt.Sprintf("C %s s, A %s s", f2(c), f2(a)))
		}
	}
	if len(rep.groups[group{"quorum-loss", "10000", "A-snap"}]) > 0 {
		q, _, _ := rep.median("quorum-loss", "10000", "A-snap")
		tl, _, _ := rep.median("total-loss", "10000", "A")
		b, _, _ := rep.median("quorum-loss", "10000", "B")
		add("quorum loss 10000 keys, A-snap / total loss A", div(q, tl), 1.5, true, fmt.Sprintf("A-snap %s s, total loss A %s s", f2(q), f2(tl)))
		add("quorum loss 10000 keys, B (the seed's force-new-cluster by hand) / A-snap", div(b, q), 4, false, fmt.Sprintf("B %s s, A-snap %s s", f2(b), f2(q)))
	}
	for _, keys := range []string{"10000"} {
		s := "lost-host"
		if len(rep.groups[group{s, keys, "A"}]) == 0 {
			continue
		}
		a, _, _ := rep.median(s, keys, "A")
		b, _, _ := rep.median(s, keys, "B")
		c, _, _ := rep.median(s, keys, "C")
		add("lost host, B/A (by hand)", div(b, a), 2, false, fmt.Sprintf("B %s s, A %s s", f2(b), f2(a)))
		add("lost host, C/A (Ansible)", div(c, a), 3, false, fmt.Sprintf("C %s s, A %s s", f2(c), f2(a)))
	}
	// the engine's own time, every run of every route
	maxPct, missing, seen := 0.0, 0, 0
	for _, r := range rep.runs {
		if !strings.HasPrefix(r.Contender, "A") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(rep.logs, r.Prefix+".out.txt"))
		e, ok := parseEngineLine(string(b))
		if err != nil || !ok {
			missing++
			continue
		}
		seen++
		maxPct = math.Max(maxPct, e.Pct)
	}
	switch {
	case seen == 0:
		out = append(out, "engine's own time ≤ 5% of every recovery's wall: not measured (n/a: no run printed an `engine time:` line)")
	default:
		what := fmt.Sprintf("the largest share over %d runs", seen)
		if missing > 0 {
			what += fmt.Sprintf("; %d runs printed no `engine time:` line", missing)
		}
		add("engine's own time, % of the recovery's wall", maxPct, 5, true, what)
	}
	return out
}

// stepTable prints the per-step times of a contender's median OK run.
func (rep *report) stepTable(s, k, c string) {
	w := rep.w
	var ok []Run
	for _, r := range rep.groups[group{s, k, c}] {
		if r.OK() {
			ok = append(ok, r)
		}
	}
	if len(ok) == 0 {
		return
	}
	sort.Slice(ok, func(i, j int) bool { return ok[i].Wall < ok[j].Wall })
	r := ok[len(ok)/2]
	files, _ := filepath.Glob(filepath.Join(rep.logs, r.Prefix+".state", "runs", "*", "state.json"))
	if len(files) != 1 {
		return
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		return
	}
	var st runstate.State
	if json.Unmarshal(b, &st) != nil {
		return
	}
	out, _ := os.ReadFile(filepath.Join(rep.logs, r.Prefix+".out.txt"))
	eng := "engine time: n/a (no `engine time:` line)"
	if e, ok := parseEngineLine(string(out)); ok {
		eng = fmt.Sprintf("engine time %.2f s = %.1f%% of its %.2f s wall", e.Sec, e.Pct, e.Wall)
	}
	fmt.Fprintf(w, "### %s, %s keys, %s: run %s, wall %s s (the run's checkpoints span %.2f s; the rest is outside its steps: process start, plan and inventory load, the live checks before the first step and after the last, exit); %s\n\n",
		s, k, c, r.Run, f2(r.Wall), st.Updated.Sub(st.Created).Seconds(), eng)
	fmt.Fprintln(w, "| step | hosts | span (s) | engine (ms) | ssh (ms, cmds) | etcd api (ms) | other (ms) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	var te, tr, ta, to int64
	for _, step := range st.Steps {
		var hs []*runstate.HostState
		for _, h := range step.Hosts {
			if h.Started != nil && h.Finished != nil {
				hs = append(hs, h)
			}
		}
		if len(hs) == 0 {
			continue
		}
		first, last := *hs[0].Started, *hs[0].Finished
		var el, rem, api int64
		cmds := 0
		for _, h := range hs {
			if h.Started.Before(first) {
				first = *h.Started
			}
			if h.Finished.After(last) {
				last = *h.Finished
			}
			el += int64(h.Elapsed)
			rem += int64(h.Remote)
			api += int64(h.API)
			cmds += h.Cmds
		}
		oth := el - rem - api
		if oth < 0 {
			oth = 0
		}
		te, tr, ta, to = te+el, tr+rem, ta+api, to+oth
		fmt.Fprintf(w, "| %s | %d | %.2f–%.2f | %d | %d (%d) | %d | %d |\n", step.ID, len(hs),
			first.Sub(st.Created).Seconds(), last.Sub(st.Created).Seconds(), el, rem, cmds, api, oth)
	}
	fmt.Fprintf(w, "| **sum** | | | %d | %d | %d | %d |\n\n", te, tr, ta, to)
}

func (rep *report) bKinds(s, k string) {
	sum := map[string][]float64{}
	var order []string
	var totals []float64
	runs := 0
	for _, r := range rep.groups[group{s, k, "B"}] {
		if !r.OK() {
			continue
		}
		f, err := os.Open(filepath.Join(rep.logs, r.Prefix+".steps.tsv"))
		if err != nil {
			continue
		}
		cmds, err := ParseSteps(f)
		f.Close()
		if err != nil {
			continue
		}
		runs++
		per := map[string]float64{}
		for _, c := range cmds {
			if _, ok := sum[c.Label]; !ok {
				sum[c.Label] = nil
				order = append(order, c.Label)
			}
			per[c.Label] += c.Sec
		}
		for l, v := range per {
			sum[l] = append(sum[l], v)
		}
		totals = append(totals, float64(len(cmds)))
	}
	if runs == 0 {
		return
	}
	var parts []string
	for _, l := range order {
		parts = append(parts, fmt.Sprintf("%s %.2f s", l, Median(sum[l])))
	}
	fmt.Fprintf(rep.w, "- %s, %s keys (%d runs, %.0f ssh/scp commands per run): %s\n", s, k, runs, Median(totals), strings.Join(parts, ", "))
}

var (
	playRE = regexp.MustCompile(`\(\d+:\d\d:\d\d\.\d+\)\s+(\d+):(\d\d):(\d\d\.\d+)`)
)

func (rep *report) cOverhead(s, k string) {
	var over []string
	for _, r := range rep.groups[group{s, k, "C"}] {
		if !r.OK() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(rep.logs, r.Prefix+".out.txt"))
		if err != nil {
			continue
		}
		m := playRE.FindAllStringSubmatch(string(b), -1)
		if m == nil {
			continue
		}
		last := m[len(m)-1]
		h, _ := strconv.Atoi(last[1])
		mi, _ := strconv.Atoi(last[2])
		sec, _ := strconv.ParseFloat(last[3], 64)
		over = append(over, f2(r.Wall-float64(h*3600+mi*60)-sec))
	}
	if len(over) > 0 {
		fmt.Fprintf(rep.w, "- %s, %s keys: outside the playbook %s s\n", s, k, strings.Join(over, ", "))
	}
}

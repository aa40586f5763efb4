package main

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Cmd is one command of the runbook by hand (contender B) as its steps.tsv
// records it: label, host, start, end (epoch seconds), seconds, exit code.
type Cmd struct {
	Label string
	Host  string
	Start float64
	End   float64
	Sec   float64
	RC    int
}

// ParseSteps reads a steps.tsv (label host start end seconds rc, no header).
func ParseSteps(r io.Reader) ([]Cmd, error) {
	var out []Cmd
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 6 {
			return nil, fmt.Errorf("line %d: %d fields, want 6 (label host start end seconds rc)", n, len(f))
		}
		var c Cmd
		var err error
		c.Label, c.Host = f[0], f[1]
		if c.Start, err = strconv.ParseFloat(f[2], 64); err == nil {
			if c.End, err = strconv.ParseFloat(f[3], 64); err == nil {
				if c.Sec, err = strconv.ParseFloat(f[4], 64); err == nil {
					c.RC, err = strconv.Atoi(f[5])
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		out = append(out, c)
	}
	return out, sc.Err()
}

// crossDeps says, per scenario, which commands wait for commands on OTHER
// hosts: label -> the labels whose every earlier command (in the runbook's
// order) on another host must have finished. Commands on one host always
// run in the runbook's order. These are the runbooks' real dependencies:
//   - total loss: the health check asks every member, so it waits for every
//     start; copy, stop, aside, restore, chown, env, start on one host need
//     nothing from another host.
//   - quorum loss: a lost member starts once the survivor added it; the next
//     member add waits for the previous member's start (etcd refuses an add
//     that would leave the cluster without quorum); the final health check
//     waits for every start. Wiping a lost member's data dir waits for
//     nothing on the survivor.
//   - lost host: the new member starts once the survivor added it (after the
//     remove, on the survivor's own sequence); health waits for the start.
var crossDeps = map[string]map[string][]string{
	"total-loss": {
		"health": {"start"},
	},
	"quorum-loss": {
		"member-add": {"start"},
		"start":      {"member-add"},
		"health":     {"start"},
	},
	"lost-host": {
		"start":  {"member-add"},
		"health": {"start"},
	},
}

// Path is the critical path of a runbook's commands run with every host in
// parallel.
type Path struct {
	Limit float64  // seconds: the longest dependent chain
	Chain []string // label@host of the commands on it, first to last
	Cmds  int      // commands counted (failed polls left out)
}

// CriticalPath is the least time the runbook's commands can take when
// commands on different hosts run in parallel, each host's commands run in
// the runbook's order, and a command waits for the commands on other hosts
// that crossDeps names. Each command costs its measured time minus conn
// (the cost of a new SSH connection; 0 keeps the measured times), at least
// 0. Failed attempts (rc != 0: the polls of a retried command while etcd was
// not ready yet, and the `sleep 1` between them) are left out: the limit
// counts each command's successful run once.
func CriticalPath(scenario string, cmds []Cmd, conn float64) (Path, error) {
	deps, ok := crossDeps[scenario]
	if !ok {
		return Path{}, fmt.Errorf("no dependencies known for scenario %q", scenario)
	}
	type node struct {
		key    string
		finish float64
		prev   int
	}
	var nodes []node
	var kept []Cmd
	lastOnHost := map[string]int{}
	for _, c := range cmds {
		if c.RC != 0 {
			continue
		}
		cost := c.Sec - conn
		if cost < 0 {
			cost = 0
		}
		start, prev := 0.0, -1
		if j, ok := lastOnHost[c.Host]; ok {
			start, prev = nodes[j].finish, j
		}
		for _, want := range deps[c.Label] {
			for j, k := range kept {
				if k.Host != c.Host && k.Label == want && nodes[j].finish > start {
					start, prev = nodes[j].finish, j
				}
			}
		}
		lastOnHost[c.Host] = len(nodes)
		nodes = append(nodes, node{key: c.Label + "@" + c.Host, finish: start + cost, prev: prev})
		kept = append(kept, c)
	}
	if len(nodes) == 0 {
		return Path{}, fmt.Errorf("no successful command")
	}
	end := 0
	for i, n := range nodes {
		if n.finish > nodes[end].finish {
			end = i
		}
	}
	p := Path{Limit: nodes[end].finish, Cmds: len(nodes)}
	for i := end; i >= 0; i = nodes[i].prev {
		p.Chain = append(p.Chain, nodes[i].key)
	}
	for i, j := 0, len(p.Chain)-1; i < j; i, j = i+1, j-1 {
		p.Chain[i], p.Chain[j] = p.Chain[j], p.Chain[i]
	}
	return p, nil
}

// Median of xs (NaN-free; 0 for none).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

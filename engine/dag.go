package engine

import (
	"strings"

	"github.com/etcd-rescue/etcd-rescue/plans"
)

// cycles finds every dependency cycle with Tarjan's algorithm and reports
// each once, as a path, at the needs: of its first step in plan order.
func (c *Compiled) cycles() plans.Findings {
	index := map[*Node]int{}
	low := map[*Node]int{}
	onStack := map[*Node]bool{}
	var stack []*Node
	var sccs [][]*Node
	next := 0
	var strong func(v *Node)
	strong = func(v *Node) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range v.Needs {
			if _, seen := index[w]; !seen {
				strong(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			var scc []*Node
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				scc = append(scc, w)
				if w == v {
					break
				}
			}
			if len(scc) > 1 {
				sccs = append(sccs, scc)
			}
		}
	}
	for _, n := range c.Nodes {
		if _, seen := index[n]; !seen {
			strong(n)
		}
	}
	order := map[*Node]int{}
	for i, n := range c.Nodes {
		order[n] = i
	}
	var fs plans.Findings
	for _, scc := range sccs {
		in := map[*Node]bool{}
		first := scc[0]
		for _, n := range scc {
			in[n] = true
			if order[n] < order[first] {
				first = n
			}
		}
		// Walk needs inside the component from the first step back to it.
		path := []string{first.ID()}
		seen := map[*Node]bool{first: true}
		cur := first
		for {
			var nxt *Node
			for _, d := range cur.Needs {
				if d == first && len(path) > 1 {
					nxt = first
					break
				}
			}
			if nxt == nil {
				for _, d := range cur.Needs {
					if in[d] && !seen[d] {
						nxt = d
						break
					}
				}
			}
			if nxt == nil || nxt == first {
				break
			}
			seen[nxt] = true
			path = append(path, nxt.ID())
			cur = nxt
		}
		path = append(path, first.ID())
		fs.Add(first.Step.At("needs"), "dependency cycle: %s", strings.Join(path, " -> needs -> ")).ForStep(first.ID()).
			WithHint("a step cannot wait for itself; remove one of these needs")
	}
	return fs
}

// layer assigns each node the wave after the latest of its needs and groups
// the waves; nodes of one wave may run in parallel. The steps of the
// prepare phase (objstore.go) are the first wave of their own: every other
// step runs after them.
func (c *Compiled) layer() {
	first := 0
	for _, n := range c.Nodes {
		if prepares(n.Type) {
			first = 1
		}
	}
	done := map[*Node]bool{}
	var visit func(n *Node) int
	visit = func(n *Node) int {
		if done[n] {
			return n.Wave
		}
		w := first
		if prepares(n.Type) {
			w = 0
		}
		for _, d := range n.Needs {
			if dw := visit(d) + 1; dw > w {
				w = dw
			}
		}
		n.Wave = w
		done[n] = true
		return w
	}
	c.Waves = nil
	for _, n := range c.Nodes {
		w := visit(n)
		for len(c.Waves) <= w {
			c.Waves = append(c.Waves, nil)
		}
	}
	for _, n := range c.Nodes {
		c.Waves[n.Wave] = append(c.Waves[n.Wave], n)
	}
}

// Ancestors returns every node n transitively needs.
func (n *Node) Ancestors() map[*Node]bool {
	out := map[*Node]bool{}
	var walk func(*Node)
	walk = func(x *Node) {
		for _, d := range x.Needs {
			if !out[d] {
				out[d] = true
				walk(d)
			}
		}
	}
	walk(n)
	return out
}

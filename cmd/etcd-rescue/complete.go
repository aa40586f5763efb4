package main

// Dynamic shell completion (etcd-rescue completion bash|zsh|fish): run ids
// from the state dir and the run index, STEP and STEP@HOST from the plan of
// the run or the plan file given, plan files, lab break scenarios.

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/etcd-rescue/etcd-rescue/engine"
	"github.com/etcd-rescue/etcd-rescue/engine/runstate"
	"github.com/etcd-rescue/etcd-rescue/lab"
	"github.com/etcd-rescue/etcd-rescue/steps"
)

// completeValues completes flag name of c with a fixed list.
func completeValues(c *cobra.Command, name string, values ...string) {
	_ = c.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
}

// completePlanFiles completes plan files: *.yaml and *.yml.
func completePlanFiles(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return []string{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
}

// completePlanFile completes the one plan file of plan, graph, apply.
func completePlanFile(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return []string{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
}

// completeApplyFile completes apply's file: a plan or a reviewed plan.
func completeApplyFile(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return []string{"yaml", "yml", "plan"}, cobra.ShellCompDirectiveFilterFileExt
}

// completeYAMLFiles completes a flag that takes a YAML file.
func completeYAMLFiles(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return []string{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
}

func completeDirs(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveFilterDirs
}

// completeRunIDs completes the RUN of status, resume and unlock: the runs
// of --state-dir, else those of the run index, with
// their plan and outcome as the description.
func completeRunIDs(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	stateDir, _ := cmd.Flags().GetString("state-dir")
	stateURL, _ := cmd.Flags().GetString("state")
	list, closeStores, err := listRuns(cmd.Context(), stateURL, stateDir)
	defer closeStores()
	if err != nil {
		cobra.CompDebugln(err.Error(), false)
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	seen := map[string]bool{}
	for _, e := range list {
		if !strings.HasPrefix(e.id, toComplete) || seen[e.id] {
			continue
		}
		seen[e.id] = true
		desc := e.store.Dir
		if st, err := e.store.Load(e.id); err == nil {
			desc = fmt.Sprintf("%s %s", st.PlanName, st.Outcome)
		}
		out = append(out, e.id+"\t"+desc)
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

// runSteps is the steps of the run given to resume, with their type and
// hosts, from its checkpoint.
func runSteps(cmd *cobra.Command, args []string) []stepHosts {
	if len(args) == 0 {
		return nil
	}
	stateDir, _ := cmd.Flags().GetString("state-dir")
	store, id, err := runstate.LocateRun(stateDir, args[0])
	if err != nil {
		return nil
	}
	st, err := store.Load(id)
	if err != nil {
		return nil
	}
	var out []stepHosts
	for _, s := range st.Steps {
		sh := stepHosts{id: s.ID, typ: s.Type}
		for _, h := range s.Hosts {
			if h.Host != "" {
				sh.hosts = append(sh.hosts, h.Host)
			}
		}
		out = append(out, sh)
	}
	return out
}

// planSteps is the steps of the plan file given to apply.
func planSteps(cmd *cobra.Command, args []string) []stepHosts {
	if len(args) == 0 {
		return nil
	}
	inv, err := cmd.Flags().GetString("inventory")
	if err != nil {
		// apply's --inventory repeats (a fleet run): the steps are the
		// plan's, whichever inventory.
		if list, _ := cmd.Flags().GetStringArray("inventory"); len(list) > 0 {
			inv = list[0]
		}
	}
	c, _ := engine.Load(args[0], inv)
	if c == nil {
		return nil
	}
	var out []stepHosts
	for _, n := range c.Nodes {
		out = append(out, stepHosts{id: n.ID(), typ: n.Type.Name, hosts: n.Hosts()})
	}
	return out
}

type stepHosts struct {
	id, typ string
	hosts   []string
}

// selectors are the STEP and STEP@HOST values of --rerun and --mark-done.
func selectors(list []stepHosts, toComplete string) []string {
	var out []string
	for _, s := range list {
		cands := []string{s.id}
		for _, h := range s.hosts {
			cands = append(cands, s.id+"@"+h)
		}
		for _, c := range cands {
			if strings.HasPrefix(c, toComplete) {
				out = append(out, c+"\t"+s.typ)
			}
		}
	}
	return out
}

// approvals are the approve steps, for --approve.
func approvals(list []stepHosts, toComplete string) []string {
	var out []string
	for _, s := range list {
		if s.typ == "approve" && strings.HasPrefix(s.id, toComplete) {
			out = append(out, s.id)
		}
	}
	return out
}

func completeRunSelectors(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return selectors(runSteps(cmd, args), toComplete), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

func completeRunApprovals(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return approvals(runSteps(cmd, args), toComplete), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

func completePlanApprovals(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return approvals(planSteps(cmd, args), toComplete), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

// completeStepTypes completes the TYPE of steps.
func completeStepTypes(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	reg := steps.Registry()
	var out []string
	for _, n := range steps.Names(reg) {
		if strings.HasPrefix(n, toComplete) {
			out = append(out, n+"\t"+reg[n].Summary)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeScenarios completes the SCENARIO of lab break.
func completeScenarios(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, s := range lab.Scenarios {
		if strings.HasPrefix(s.Name, toComplete) {
			out = append(out, s.Name+"\t"+s.Does)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

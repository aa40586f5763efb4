package scaffold

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// The Kubernetes side of a generated plan. With cluster.kubernetes in the
// inventory, every scenario that replaces etcd's data or forces a new
// cluster does what examples/static-pod-restore.yaml does: the control
// plane stops before etcd is touched (kube-stop-control-plane), starts
// again once the data is verified (kube-start-control-plane), its API
// servers must be ready (kube-wait-ready) and, after a restore with a
// revision bump, must answer a watch from the old revision with 410 Gone
// (kube-verify-relist). A step the inventory cannot support (no
// apiServer.ca, no client certificate, no revision bump) is left out with a
// comment that says why and what to add. Without the section, the plans
// stop and start kube-apiserver alone with stop-service and start-service,
// as before, and say what the section would add.

// kubeMode says what a scenario does with the API servers when the
// inventory has no cluster.kubernetes.
type kubeMode int

const (
	// apiServerAlways: stop-service kube-apiserver on every host whatever
	// the layout (a host without it is fine), as restore-all always did.
	apiServerAlways kubeMode = iota
	// apiServerStaticPod: only in the static-pod layout (single-node-restore).
	apiServerStaticPod
	// apiServerNever: nothing (quorum-loss force-new-cluster has never
	// stopped it; a comment suggests cluster.kubernetes).
	apiServerNever
)

// kubeSectionHint is what cluster.kubernetes would add, for the comments of
// plans scaffolded without it.
const kubeSectionHint = "add cluster.kubernetes to the inventory (docs/plan-format.md) to stop kube-controller-manager and kube-scheduler too, wait for the API servers' /readyz and prove that clients relist"

// apiStop is what stopControlPlane added.
type apiStop struct {
	id   string // the step later steps need; "" when nothing was added
	kube bool   // kube-stop-control-plane (else stop-service kube-apiserver)
}

// stopControlPlane adds the step that stops the API servers before etcd is
// stopped or changed; needs are the steps it waits for.
func (g *gen) stopControlPlane(needs []string, mode kubeMode) apiStop {
	k := g.c.Kubernetes
	if k == nil {
		if mode == apiServerNever || (mode == apiServerStaticPod && !g.staticPod()) {
			if g.staticPod() {
				g.story = append(g.story, "This plan does not stop kube-apiserver: "+kubeSectionHint+
					", with the control plane stopped around the recovery.")
			}
			return apiStop{}
		}
		c := para("kube-apiserver stops first on every host (a host without it is fine) and starts once etcd is healthy.")
		if g.staticPod() {
			c = append(c, para("Static-pod layout without cluster.kubernetes: only kube-apiserver is stopped (its manifest parked) by stop-service; "+kubeSectionHint+".")...)
		}
		g.add(&step{comments: c, id: "stop-apiserver", typ: "stop-service", on: []string{"all"}, needs: needs, with: []kv{{"unit", "kube-apiserver"}}})
		return apiStop{id: "stop-apiserver"}
	}
	how := "each is stopped with systemctl stop"
	if k.ControlPlane == "static-pod" {
		how = fmt.Sprintf("each manifest is parked out of %s and the step waits until crictl shows none of their containers running", k.Manifests)
	}
	until := "healthy and consistent"
	if g.o.Scenario == "single-node-restore" {
		until = "healthy"
	}
	g.story = append(g.story, fmt.Sprintf("The Kubernetes control plane (%s on %s) is stopped before etcd and started once etcd is %s.",
		strings.Join(k.Components, ", "), strings.Join(k.Hosts, ", "), until))
	st := g.add(&step{comments: para(
		fmt.Sprintf("The control plane (cluster.kubernetes, %s: %s) stops on %s before etcd is stopped:", k.ControlPlane, strings.Join(k.Components, ", "), strings.Join(k.Hosts, ", ")),
		"an API server left running while etcd's data is replaced serves and caches the old data, and its controllers act on it;",
		how+".",
	), id: "stop-control-plane", typ: "kube-stop-control-plane", needs: needs})
	if strings.HasPrefix(g.o.Scenario, "quorum-loss") {
		// hosts of lost members may be gone for good, as the etcd fencing step assumes
		st.comments = append(st.comments, para("In a quorum loss some control-plane hosts may be gone for good: unreachable: skip records a host that does not answer and goes on (a dead host runs no API server), as the fencing of etcd does.")...)
		st.with = append(st.with, kv{"unreachable", "skip"})
	} else {
		st.comments = append(st.comments, para("A control-plane host that cannot be reached fails this step; one gone for good runs no API server: set unreachable: skip, or narrow on: to the hosts that are up.")...)
	}
	return apiStop{id: "stop-control-plane", kube: true}
}

// startControlPlane adds the steps after the data is verified (after):
// the control plane starts again, its API servers must be ready and, when
// relist says why not ("" when the plan restores with a revision bump),
// the relist proof; without cluster.kubernetes, start-service
// kube-apiserver when stop added stop-service.
func (g *gen) startControlPlane(stop apiStop, after []string, noRelist string) {
	if stop.id == "" {
		return
	}
	if !stop.kube {
		g.add(&step{id: "start-apiserver", typ: "start-service", on: []string{"all"}, needs: after,
			with: []kv{{"unit", "kube-apiserver"}, {"missingOK", flag(true)}}})
		return
	}
	k := g.c.Kubernetes
	g.add(&step{gap: true, comments: para(
		"The control plane starts again only now that etcd is healthy and its members hold the same data;",
		"controller-manager and scheduler restart too, so no cache from before the recovery survives in them.",
	), id: "start-control-plane", typ: "kube-start-control-plane", needs: after})
	prev := "start-control-plane"
	a := k.APIServer
	if a == nil || a.CA == "" {
		what := "kube-wait-ready and kube-verify-relist are left out: they verify the API servers' serving certificates and need"
		if noRelist != "" {
			what = "kube-wait-ready is left out: it verifies the API servers' serving certificates and needs"
		}
		g.tail = append(g.tail, para(what+" cluster.kubernetes.apiServer.ca in the inventory",
			"(kubeadm: a copy of /etc/kubernetes/pki/ca.crt on this machine).")...)
		if noRelist == "" {
			g.tail = append(g.tail, para("kube-verify-relist also needs apiServer.cert and key (kubeadm: copies of /etc/kubernetes/pki/apiserver-kubelet-client.crt and .key).",
				"With them, add:")...)
			g.tail = append(g.tail, "  - {id: ready, type: kube-wait-ready, needs: [start-control-plane]}",
				"  - {id: relist, type: kube-verify-relist, needs: [ready], with: {namespace: kube-system}}")
		} else {
			g.tail = append(g.tail, "With it, add:", "  - {id: ready, type: kube-wait-ready, needs: [start-control-plane]}")
			g.tail = append(g.tail, para(noRelist)...)
		}
		return
	}
	g.add(&step{comments: para(
		fmt.Sprintf("Every API server must answer GET /readyz with 200 on port %d (its etcd check included).", a.Port),
	), id: "ready", typ: "kube-wait-ready", needs: []string{prev}})
	prev = "ready"
	switch {
	case noRelist != "":
		g.tail = append(g.tail, para(noRelist)...)
	case a.Cert == "" || a.Key == "":
		g.tail = append(g.tail, para("kube-verify-relist is left out: its watch is not anonymous and needs cluster.kubernetes.apiServer.cert and key",
			"in the inventory, a client certificate allowed to watch ConfigMaps (kubeadm: copies of /etc/kubernetes/pki/apiserver-kubelet-client.crt and .key).",
			"It proves that clients relist after the restore; with them, add:")...)
		g.tail = append(g.tail, "  - {id: relist, type: kube-verify-relist, needs: [ready], with: {namespace: kube-system}}")
	default:
		g.add(&step{comments: para(
			"The proof that Kubernetes clients relist: a watch from the revision recorded before the restore",
			"must be answered 410 Gone by every API server (the restore bumped the revision and marked it compacted);",
			"otherwise informers, kubelets and controllers keep caches that the restore took back in time.",
		), id: "relist", typ: "kube-verify-relist", needs: []string{prev}, with: []kv{{"namespace", "kube-system"}}})
	}
}

// noRelistBump is why kube-verify-relist is left out after a restore
// without a revision bump ("" when the restore bumps it).
func noRelistBump(bump, bumpWhy string) string {
	if bump == "auto" {
		return ""
	}
	return "kube-verify-relist is left out: " + bumpWhy + "."
}

// noRelistForced is why kube-verify-relist is left out after
// force-new-cluster.
const noRelistForced = "kube-verify-relist is left out: force-new-cluster keeps the survivor's data and revision " +
	"(nothing is restored, so nothing bumps the revision and no watch is made to fail); restart every Kubernetes " +
	"client that may have seen newer revisions than the survivor's, or take --route snapshot, whose restore bumps " +
	"the revision and proves the relist."

// kubeKeepsRunning is the Kubernetes part of ip-change and lost-host: the
// data is not replaced and the other members keep quorum, so the control
// plane keeps running; once the member is back, the API servers of the
// other control-plane hosts must still be ready (when apiServer.ca is
// set). host is the member's host: its own API server is not asked (after
// an ip-change its serving certificate and --advertise-address name the old
// address; a host that replaces a lost one may run none yet).
func (g *gen) kubeKeepsRunning(host, after string) {
	k := g.c.Kubernetes
	if k == nil {
		return
	}
	g.story = append(g.story, fmt.Sprintf("The Kubernetes control plane keeps running: etcd's data is not replaced and the other "+
		"members keep quorum, so the API servers keep serving the same data through them (an API server that uses only "+
		"the etcd on %s waits for it and reconnects). Nothing here changes %s's own Kubernetes side "+
		"(certificates, --advertise-address, kubelet).", host, host))
	var others []string
	for _, h := range k.Hosts {
		if h != host {
			others = append(others, h)
		}
	}
	if g.o.Scenario == "lost-host" && slices.Contains(k.Hosts, host) {
		// The replacement is a control-plane host: its components start
		// once its etcd member is a voter with the data, as after a
		// kubeadm join; then its API server is asked too.
		where := "their manifests parked in " + path.Join(path.Dir(k.Manifests), "etcd-rescue-parked") + " or already in " + k.Manifests
		if k.ControlPlane == "systemd" {
			where = "their units installed"
		}
		g.add(&step{comments: para(
			fmt.Sprintf("%s replaces a control-plane host: its %s start once its etcd member is a voter with the data (%s;", host, strings.Join(k.Components, ", "), where),
			"the step fails when the host has none of them: install them first, e.g. with kubeadm join --control-plane, or remove this step).",
		), id: "start-control-plane", typ: "kube-start-control-plane", on: []string{host}, needs: []string{after}})
		after = "start-control-plane"
		others = append([]string{}, k.Hosts...)
	}
	a := k.APIServer
	switch {
	case len(others) == 0:
		g.tail = append(g.tail, para(fmt.Sprintf("No kube-wait-ready: the only control-plane host is %s, whose API server this plan does not ask (%s).", host, g.ownAPIServerWhy()))...)
	case a == nil || a.CA == "":
		g.tail = append(g.tail, para("kube-wait-ready is left out: it verifies the API servers' serving certificates and needs",
			"cluster.kubernetes.apiServer.ca in the inventory (kubeadm: a copy of /etc/kubernetes/pki/ca.crt on this machine). With it, add:")...)
		g.tail = append(g.tail, fmt.Sprintf("  - {id: ready, type: kube-wait-ready, on: %s, needs: [%s]}", list(others), after))
	case slices.Contains(others, host):
		g.add(&step{comments: para(
			"The control plane was not stopped: every API server, the new one on " + host + " included, must answer GET /readyz with 200.",
		), id: "ready", typ: "kube-wait-ready", on: others, needs: []string{after}})
	default:
		g.add(&step{comments: para(
			"The control plane was not stopped: the API servers of the other control-plane hosts must still answer GET /readyz with 200",
			fmt.Sprintf("(%s's is not asked: %s).", host, g.ownAPIServerWhy()),
		), id: "ready", typ: "kube-wait-ready", on: others, needs: []string{after}})
	}
}

// para is a comment paragraph: sentences joined, wrapped at 86 columns.
func para(s ...string) []string { return wrap(strings.Join(s, " "), 86) }

func (g *gen) ownAPIServerWhy() string {
	if g.o.Scenario == "ip-change" {
		return "its serving certificate and --advertise-address may still name the old address"
	}
	return "a host that replaces a lost one may run none yet"
}

package plans

import (
	"strings"
	"testing"
)

func kubePlan(t *testing.T, layout, kube string) *Plan {
	t.Helper()
	src := `version: 1
name: k
cluster:
  name: c
  etcdVersion: "3.5"
  layout: ` + layout + `
  members:
    - {name: e1, host: h1, peerURL: "https://10.0.0.1:2380", clientURL: "https://10.0.0.1:2379"}
    - {name: e2, host: h2, peerURL: "https://10.0.0.2:2380", clientURL: "https://10.0.0.2:2379"}
    - {name: e3, host: h3, peerURL: "https://10.0.0.3:2380", clientURL: "https://10.0.0.3:2379"}
` + kube + `
hosts:
  h1: {address: 10.0.0.1}
  h2: {address: 10.0.0.2}
  h3: {address: 10.0.0.3}
  lb: {address: 10.0.0.9}
steps:
  - {id: a, type: approve}
`
	p, fs := Parse("plan.yaml", []byte(src))
	if fs.Errors() > 0 {
		t.Fatal(fs)
	}
	p.ApplyDefaults()
	return p
}

func TestKubernetesDefaults(t *testing.T) {
	for name, tc := range map[string]struct {
		layout, kube string
		want         Kubernetes
	}{
		"kubeadm": {layout: "{service: static-pod}", kube: "  kubernetes: {}",
			want: Kubernetes{ControlPlane: "static-pod", Manifests: "/etc/kubernetes/manifests", Components: DefaultComponents, Hosts: []string{"h1", "h2", "h3"}}},
		"systemd etcd": {layout: "{service: systemd}", kube: "  kubernetes: {}",
			want: Kubernetes{ControlPlane: "systemd", Manifests: "/etc/kubernetes/manifests", Components: DefaultComponents, Hosts: []string{"h1", "h2", "h3"}}},
		"kubespray, written out": {layout: "{service: systemd}", kube: "  kubernetes: {controlPlane: static-pod, components: [kube-apiserver], hosts: [h1, lb], manifests: /srv/manifests}",
			want: Kubernetes{ControlPlane: "static-pod", Manifests: "/srv/manifests", Components: []string{"kube-apiserver"}, Hosts: []string{"h1", "lb"}}},
	} {
		t.Run(name, func(t *testing.T) {
			k := kubePlan(t, tc.layout, tc.kube).Cluster.Kubernetes
			if k == nil {
				t.Fatal("no kubernetes section")
			}
			if k.ControlPlane != tc.want.ControlPlane || k.Manifests != tc.want.Manifests ||
				strings.Join(k.Components, ",") != strings.Join(tc.want.Components, ",") || strings.Join(k.Hosts, ",") != strings.Join(tc.want.Hosts, ",") {
				t.Errorf("got %+v, want %+v", k, tc.want)
			}
			if k.APIServer == nil || k.APIServer.Port != 6443 {
				t.Errorf("apiServer %+v", k.APIServer)
			}
		})
	}
	if p := kubePlan(t, "{service: static-pod}", ""); p.Cluster.Kubernetes != nil {
		t.Errorf("a plan without the section got one: %+v", p.Cluster.Kubernetes)
	}
	// The default component list is not shared between plans.
	p := kubePlan(t, "{service: static-pod}", "  kubernetes: {}")
	p.Cluster.Kubernetes.Components[0] = "changed"
	if DefaultComponents[0] != "kube-apiserver" {
		t.Fatal("a plan changed DefaultComponents")
	}
}

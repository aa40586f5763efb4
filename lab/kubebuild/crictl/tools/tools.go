//go:build tools

// Package tools pins crictl in this module's go.mod (make kube-bins builds
// sigs.k8s.io/cri-tools/cmd/crictl from it); it is never compiled.
package tools

import _ "sigs.k8s.io/cri-tools/cmd/crictl"

// Command pause is the sandbox ("infra") container of the lab's static pods:
// it holds the pod's namespaces and does nothing else, like Kubernetes' own
// pause.  Built statically by `make kube-bins`; packed as
// registry.k8s.io/pause:3.10.1 by mkimage, because containerd's CRI needs a
// sandbox image and the lab has no registry to pull one from.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s == syscall.SIGCHLD {
			// PID 1 of the pod's namespace reaps what is reparented to it.
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}

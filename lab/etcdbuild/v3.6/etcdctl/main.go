// Command etcdctl is the upstream etcdctl, built from the Go module proxy for
// the rehearsal lab.
package main

import "go.etcd.io/etcd/etcdctl/v3/ctlv3"

func main() { ctlv3.MustStart() }

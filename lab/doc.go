// Package lab owns etcd-rescue's rehearsal lab: disposable etcd clusters on
// real SSH hosts, all on one Linux machine, for end-to-end tests, benchmarks
// and for rehearsing a recovery plan before running it for real.
//
// A lab host hN is a network namespace etcdlab-hN with its own address
// 10.77.0.(10+N) on the bridge etcdlab0 (the machine itself is 10.77.0.1).
// In the default "nspawn" mode each host boots a debootstrap'd Debian
// bookworm rootfs with systemd-nspawn --boot (real systemd, real OpenSSH sshd,
// a real etcd.service), one overlayfs upper dir per host as its disk.  Where
// nspawn cannot run, the "light" mode is chosen automatically: the host is a
// network + mount + UTS namespace running the machine's own sshd, with
// per-host overlays over /etc, /var/lib and /var/log and a small
// systemctl-compatible shim for etcd.service.
//
// The package owns everything of a lab: the etcd binaries it puts on the
// hosts (built by the nested modules under lab/etcdbuild into lab/bin), the
// ssh keys and known_hosts, the cluster it starts, the deterministic keys it
// writes and their fingerprint, the inventory file a recovery plan uses, the
// damage a Break does, and the clean-up done by Down.  Everything lives in a
// state directory (default /var/tmp/etcd-rescue-lab) and only talks to
// loopback and to the lab's own namespaces.  With Options.TLS the cluster
// has https client and peer URLs with client certificates required, from a
// CA and certificates the package makes itself (see PKIDir).  With
// Options.S3 and Options.StateStore the operator side also gets an
// S3-compatible object store and a management etcd for shared run state,
// both on 127.0.0.1 only (see S3 and StateStoreOf).
//
// Only one lab can be up per machine (the bridge and the address range are
// fixed); Up refuses, or waits with Options.WaitBusy, when another lab is up.
package lab

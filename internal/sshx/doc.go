// Package sshx owns the SSH transport that carries a plan to the etcd hosts.
//
// It keeps ONE authenticated connection per host ([Client]) and multiplexes every
// command, file transfer and TCP tunnel over it. Host keys are verified against
// known_hosts (plain keys, and host certificates through @cert-authority lines;
// @revoked honoured) unless the caller explicitly opts out
// ([Config.InsecureIgnoreHostKey], reported by [Client.HostKeyCheckDisabled]).
// [Config.WithSSHConfig] fills a Config from an OpenSSH client config file. Connections are kept alive with
// keepalive@openssh.com requests and are re-established transparently on the next
// call after a drop; a command that may have started when the connection dropped is
// never re-run: it fails with an error matching [ErrConnectionLost] so that the
// caller probes the remote state instead.
//
// Every value that reaches a remote shell goes through [Quote] or [Join], which
// are the project's single quoting implementation (internal/shellquote). A
// command's remote process group is recorded when it starts, so that a timeout or
// a cancelled context kills everything the command started, not just the SSH
// channel.
//
// Remote hosts are expected to run OpenSSH with a POSIX login shell and to have
// sha256sum(1); with [Config.Sudo], also util-linux setsid(1) and sudo(8) letting
// the user run setsid and kill as root without a password (sudo -n never prompts;
// since setsid runs sh, that amounts to unrestricted sudo).
package sshx

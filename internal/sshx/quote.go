package sshx

import "github.com/etcd-rescue/etcd-rescue/internal/shellquote"

// Quote returns s as exactly one POSIX shell word: no expansion, no word
// splitting, no globbing, no command substitution. It is the project's single
// quoting implementation, [shellquote.Quote], offered here so that callers of the
// transport need no second import. Every value taken from a plan reaches a remote
// shell through Quote or [Join]. A shell word cannot carry a NUL byte (the remote
// exec cuts the value there), so such values are rejected before they get here.
func Quote(s string) string { return shellquote.Quote(s) }

// Join quotes every element of argv with [Quote] and joins them with spaces, giving
// a command line that the remote shell splits back into exactly argv.
func Join(argv ...string) string { return shellquote.Join(argv...) }

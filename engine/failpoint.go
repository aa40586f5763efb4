package engine

import (
	"os"
	"strings"
	"syscall"
)

// CrashAfterEnv names the crash tests' failpoint. When it is set, the
// process kills itself with SIGKILL (as kill -9 or a power cut would) right
// after it has journalled a successful remote command or etcd API call
// whose text contains the variable's value, or a log line of a step (a
// transfer's progress, "s3 upload ..."): the instant between a change
// made on the cluster and its checkpoint, which no kill from outside hits
// reliably. Every session in which it is set says so first, loudly. Never
// set it on a real run.
const CrashAfterEnv = "ETCD_RESCUE_CRASH_AFTER"

var crashAfter = os.Getenv(CrashAfterEnv)

// crashPoint is called after a journal line of a call that succeeded.
func crashPoint(what string) {
	if crashAfter == "" || !strings.Contains(what, crashAfter) {
		return
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}

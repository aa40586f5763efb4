package plans

import (
	"os"
	"path/filepath"
	"strings"
)

// LocalFile resolves a path on the operator machine named in a plan or an
// inventory; base is the directory of the file that names it (the plan's
// for steps' with:, [Plan.SSHBase] or [Plan.ClusterBase] for the sections).
// It is the only resolver of operator-side paths: ssh identity, knownHosts
// and config, cluster.tls files, inventory:, snapshot-save to: and
// snapshot-copy from:.
//
//   - "~" and "~/..." are the local home directory (like a shell; "~user"
//     is not expanded);
//   - an absolute path stays as it is;
//   - any other path is relative to base, never to the current directory,
//     so a plan means the same files from any cwd;
//   - "" stays "".
func LocalFile(base, f string) string {
	if f == "~" || strings.HasPrefix(f, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, strings.TrimPrefix(f, "~"))
		}
		return f
	}
	if f == "" || filepath.IsAbs(f) || base == "" {
		return f
	}
	return filepath.Join(base, f)
}

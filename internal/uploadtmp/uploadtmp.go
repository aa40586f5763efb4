// Package uploadtmp names the temporary file an upload writes beside its
// target before it renames it into place. The SSH transport (internal/sshx)
// writes it; a step that uploads removes the ones an interrupted run left
// behind (steps.SnapshotCopy). Both take the name from here, so neither
// needs to know the other.
package uploadtmp

import "path"

// Suffix ends the name of every upload's temporary file.
const Suffix = ".tmp"

// Prefix is the start of the name of the temporary files of uploads to
// remotePath: they sit in its directory as Prefix + a random token + Suffix.
func Prefix(remotePath string) string {
	dir, base := path.Split(remotePath)
	return dir + "." + base + ".sshx-"
}

// Name is the temporary file of one upload to remotePath.
func Name(remotePath, token string) string {
	return Prefix(remotePath) + token + Suffix
}

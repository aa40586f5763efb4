// Package uploadtmp names the temporary file an upload writes beside its
// target before it renames it into place. The SSH transport (internal/sshx)
// writes it; a step that uploads removes the ones an interrupted run left
// behind (steps.SnapshotCopy). Both take the name from here, so neither
// needs to know the other.
package uploadtmp

import (
	"context"
	"path"
)

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

// runKey carries the run id of an upload in its context.
type runKey struct{}

// WithRun tags the uploads made with ctx with runID: their temporary
// files are named RunPrefix(remotePath, runID) + a token + Suffix, so that
// two runs never share one, and a run removes only its own leftovers.
func WithRun(ctx context.Context, runID string) context.Context {
	return context.WithValue(ctx, runKey{}, runID)
}

// RunOf is the run id WithRun put in ctx, or "".
func RunOf(ctx context.Context) string {
	s, _ := ctx.Value(runKey{}).(string)
	return s
}

// RunPrefix is the start of the names of run runID's temporary files of
// uploads to remotePath (Prefix when runID is "").
func RunPrefix(remotePath, runID string) string {
	if runID == "" {
		return Prefix(remotePath)
	}
	return Prefix(remotePath) + runID + "-"
}

// NameFor is the temporary file of one upload to remotePath made with ctx.
func NameFor(ctx context.Context, remotePath, token string) string {
	return RunPrefix(remotePath, RunOf(ctx)) + token + Suffix
}

package main

import (
	"errors"
	"io"
)

// cmdLab is wired in its own commit with the lab package.
func cmdLab(args []string, stdout, stderr io.Writer) int {
	return exitCode(errors.New("lab: not in this build"), stderr)
}

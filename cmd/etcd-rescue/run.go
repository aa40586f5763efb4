package main

// Placeholder until the executor lands; replaced by the real commands.

import (
	"errors"
	"io"
)

var errNotYet = errors.New("not implemented yet")

func cmdApply(args []string, stdout, stderr io.Writer) int  { return exitCode(errNotYet, stderr) }
func cmdResume(args []string, stdout, stderr io.Writer) int { return exitCode(errNotYet, stderr) }
func cmdStatus(args []string, stdout, stderr io.Writer) int { return exitCode(errNotYet, stderr) }
func cmdRuns(args []string, stdout, stderr io.Writer) int   { return exitCode(errNotYet, stderr) }
func cmdUnlock(args []string, stdout, stderr io.Writer) int { return exitCode(errNotYet, stderr) }

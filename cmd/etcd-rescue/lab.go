package main

import "io"

func cmdLab(args []string, stdout, stderr io.Writer) int { return exitCode(errNotYet, stderr) }

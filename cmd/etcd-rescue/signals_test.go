package main

import (
	"context"
	"os"
	"syscall"
	"testing"
)

// The two phases of an interrupt, with real signals to this process.
func TestInterruptsTwoPhases(t *testing.T) {
	var phases []int
	ctx, stop, release := interrupts(context.Background(), func(p int) { phases = append(phases, p) })
	defer release()
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	<-stop
	if ctx.Err() != nil {
		t.Fatal("first interrupt cancelled the context")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-ctx.Done()
	if len(phases) != 2 || phases[0] != 1 || phases[1] != 2 {
		t.Errorf("phases %v", phases)
	}
}

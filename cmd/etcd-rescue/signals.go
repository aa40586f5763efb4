package main

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// interrupts implements the two-phase interrupt for a command line: the
// first SIGINT/SIGTERM closes stop (no new step-hosts; running ones finish
// and are checkpointed), the second cancels the returned context (running
// commands are killed). notify, if set, is told about each phase. Call
// release when the run is over.
func interrupts(parent context.Context, notify func(phase int)) (ctx context.Context, stop <-chan struct{}, release func()) {
	ctx, cancel := context.WithCancel(parent)
	stopCh := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	var once sync.Once
	go func() {
		phase := 0
		for {
			select {
			case <-sigs:
				phase++
				if notify != nil {
					notify(phase)
				}
				if phase == 1 {
					close(stopCh)
				} else {
					cancel()
					return
				}
			case <-done:
				return
			}
		}
	}()
	return ctx, stopCh, func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(done)
			cancel()
		})
	}
}

package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestReadmeExitCodes keeps README.md's exit-code table equal to exitCodes.
// ETCD_RESCUE_PRINT_EXIT_CODES=1 prints the rows to paste.
func TestReadmeExitCodes(t *testing.T) {
	var want []string
	for _, e := range exitCodes {
		want = append(want, fmt.Sprintf("| %d | %s | %s |", e.Code, e.Name, e.Meaning))
	}
	if os.Getenv("ETCD_RESCUE_PRINT_EXIT_CODES") != "" {
		fmt.Println(strings.Join(want, "\n"))
	}
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Exit codes\n")
	if !ok {
		t.Fatal("README.md has no ## Exit codes section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	var got []string
	for _, line := range strings.Split(sec, "\n") {
		if strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| code ") {
			got = append(got, line)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("README.md's exit-code table differs from exitCodes (exitcodes.go)\nREADME:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

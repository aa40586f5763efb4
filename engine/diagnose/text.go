package diagnose

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// WriteText writes the diagnosis for a person: situation and summary
// first, then each finding (severity, code, summary, evidence indented,
// hint), the recommendation with its notes, and the next command.
func (d *Diagnosis) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "situation: %s\n", d.Situation)
	fmt.Fprintf(bw, "summary:   %s\n", d.Summary)
	for _, f := range d.Findings {
		fmt.Fprintf(bw, "\n%-7s %s: %s\n", f.Severity, f.Code, f.Summary)
		for _, e := range f.Evidence {
			fmt.Fprintf(bw, "          %s\n", e)
		}
		if f.Hint != "" {
			fmt.Fprintf(bw, "        hint: %s\n", f.Hint)
		}
	}
	if r := d.Recommend; r != nil {
		fmt.Fprintf(bw, "\nrecommendation: %s", r.Scenario)
		if r.Route != "" {
			fmt.Fprintf(bw, " (route %s)", r.Route)
		}
		fmt.Fprintln(bw)
		if r.Survivor != "" {
			fmt.Fprintf(bw, "  survivor: %s\n", r.Survivor)
		}
		if len(r.Fence) > 0 {
			fmt.Fprintf(bw, "  fence:    %s\n", strings.Join(r.Fence, ", "))
		}
		for _, m := range r.Members {
			fmt.Fprintf(bw, "  member:   %s on %s", m.Name, m.Host)
			if m.ID != "" {
				fmt.Fprintf(bw, ", id %s", m.ID)
			}
			if m.OldPeerURL != "" && m.OldPeerURL != m.NewPeerURL {
				fmt.Fprintf(bw, ", %s -> %s", m.OldPeerURL, m.NewPeerURL)
			}
			fmt.Fprintf(bw, ": %s\n", m.Reason)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(bw, "  - %s\n", n)
		}
	}
	if d.Next != "" {
		fmt.Fprintf(bw, "\nnext: %s\n", d.Next)
	}
	return bw.Flush()
}

package engine

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// progress writes plain timestamped lines, one per transition. They are
// meant for a terminal and for a CI log alike, so no redraw.
type progress struct {
	mu  sync.Mutex
	w   io.Writer
	red *Redactor
	now func() time.Time
}

func (p *progress) line(key, msg string) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s %s %s\n", p.now().UTC().Format(time.RFC3339), key, p.red.String(msg))
}

func (p *progress) printf(format string, args ...any) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s %s\n", p.now().UTC().Format(time.RFC3339), p.red.String(fmt.Sprintf(format, args...)))
}

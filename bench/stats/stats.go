// Package stats holds the small helpers the benchmarks under bench/ share
// to report what they measured.
package stats

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Median is the middle value of d (the upper middle of an even count).
func Median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// Sec shows d in seconds with two decimals.
func Sec(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// Percentile is the value of d at percentile p (0-100, nearest rank).
func Percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

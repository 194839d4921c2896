// Package tcpext holds the scenarios of middleboxes that break TCP's
// extensions: sequence number randomization that leaves SACK blocks
// untranslated, a mangled window scale option, and black holes for ECN's
// and Fast Open's SYNs (docs/field-failures.md#sack-seq-randomization,
// #window-scale-mangling, #ecn-tfo-black-holes).
package tcpext

import "github.com/faultbox/faultbox/internal/scenario"

// deltas is each counter's growth in kernel log log between the snapshots
// labelled "ARM start" and "ARM end" (0 when one is missing).
func deltas(e *scenario.Evidence, log, arm string, counters []string) map[string]int64 {
	out := make(map[string]int64, len(counters))
	for _, k := range counters {
		end, ok1 := e.Netstat(log, arm+" end", k)
		start, ok2 := e.Netstat(log, arm+" start", k)
		if ok1 && ok2 {
			out[k] = end - start
		}
	}
	return out
}

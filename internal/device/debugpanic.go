//go:build faultbox_testhooks

package device

import (
	"log"
	"os"
	"time"
)

// DebugPanicEnv exists only in binaries built with the faultbox_testhooks
// tag (the end-to-end tests build so). The crash-safety test sets it to a
// Go duration on `lab up`; the device inherits it and panics that long
// after it is ready, as a bug in the device would, so the test can check
// that `lab down --all` removes what a crashed device left.
const DebugPanicEnv = "FAULTBOX_DEBUG_PANIC_AFTER"

// debugPanicAfter arms the test-only panic of DebugPanicEnv.
func debugPanicAfter(l *log.Logger) {
	v := os.Getenv(DebugPanicEnv)
	if v == "" {
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		l.Printf("%s=%q is not a positive duration: ignored", DebugPanicEnv, v)
		return
	}
	l.Printf("%s=%s: the device panics in %s (a test-only crash)", DebugPanicEnv, v, d)
	time.AfterFunc(d, func() { panic(DebugPanicEnv + ": test-only crash of the device") })
}

package device

import (
	"log"
	"os"
	"time"
)

// DebugPanicEnv is for tests only. The crash-safety end-to-end test sets it
// to a Go duration on `lab up`; the device inherits it and panics that long
// after it is ready, as a bug in the device would, so the test can check
// that `lab down` removes what a crashed device left. Unset (always, in
// real use) it does nothing.
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

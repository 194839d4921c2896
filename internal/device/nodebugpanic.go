//go:build !faultbox_testhooks

package device

import "log"

// debugPanicAfter does nothing outside test builds (debugpanic.go).
func debugPanicAfter(*log.Logger) {}

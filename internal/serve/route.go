package serve

import (
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/units"
)

const (
	httpDate   = "Mon, 02 Jan 2006 15:04:05 GMT"
	writeChunk = 256 << 10 // bytes per write() of a large body
	maxSleep   = time.Hour
)

// route decides the answer for a path: GET /bytes/N answers N bytes (N may
// carry a size unit: /bytes/10mib), GET /sleep/DURATION waits, then answers
// the default size; every other path answers the default size. A bad N or
// DURATION is a 400 with msg as its body.
func route(path string, defSize int64) (status int, size int64, wait time.Duration, msg string) {
	switch {
	case strings.HasPrefix(path, "/bytes/"):
		var z units.Size
		if err := z.Set(strings.TrimPrefix(path, "/bytes/")); err != nil {
			return 400, 0, 0, "bad size: " + err.Error() + "\n"
		}
		return 200, int64(z), 0, ""
	case strings.HasPrefix(path, "/sleep/"):
		d, err := time.ParseDuration(strings.TrimPrefix(path, "/sleep/"))
		if err != nil || d < 0 || d > maxSleep {
			return 400, 0, 0, "bad duration: want 0 to 1h, such as 250ms or 2s\n"
		}
		return 200, defSize, d, ""
	}
	return 200, defSize, 0, ""
}

func statusText(code int) string {
	switch code {
	case 100:
		return "Continue"
	case 200:
		return "OK"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 408:
		return "Request Timeout"
	}
	return "Status"
}

// pattern is the body text: 64-byte lines, so any body is readable and a
// byte's offset can be told from its content.
var pattern = func() []byte {
	const line = "faultbox reference server body 0123456789abcdefghijklmnopqrstuv\n"
	b := make([]byte, 0, writeChunk+len(line))
	for len(b) < writeChunk+len(line) {
		b = append(b, line...)
	}
	return b
}()

// patternAt returns body bytes [off, off+n) for n <= writeChunk.
func patternAt(off, n int64) []byte {
	s := off % 64
	return pattern[s : s+n]
}

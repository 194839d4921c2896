package serve

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// logBuf is a log sink tests can read while the server writes to it.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Events parses the log so far; a line that is not JSON fails the test.
func (l *logBuf) Events(t *testing.T) []Event {
	t.Helper()
	l.mu.Lock()
	data := append([]byte(nil), l.b.Bytes()...)
	l.mu.Unlock()
	var evs []Event
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		evs = append(evs, e)
	}
	return evs
}

// WaitFor polls the log until an event matches, for at most d.
func (l *logBuf) WaitFor(t *testing.T, d time.Duration, match func(Event) bool) Event {
	t.Helper()
	end := time.Now().Add(d)
	for {
		for _, e := range l.Events(t) {
			if match(e) {
				return e
			}
		}
		if time.Now().After(end) {
			t.Fatalf("no matching event within %v; log:\n%s", d, l.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitCount polls the log until it holds n events named name, for at most d.
func (l *logBuf) WaitCount(t *testing.T, d time.Duration, name string, n int) {
	t.Helper()
	end := time.Now().Add(d)
	for {
		got := 0
		for _, e := range l.Events(t) {
			if e.Event == name {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%d %s events after %v, want %d; log:\n%s", got, name, d, n, l.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func named(name string) func(Event) bool { return func(e Event) bool { return e.Event == name } }

// socketPair returns the two ends of an AF_UNIX stream socketpair as
// net.Conns: a connection with real kernel buffers, half-close and
// deadlines, without any network.
func socketPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), fmt.Sprintf("socketpair-%d", i))
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatalf("FileConn: %v", err)
		}
		conns[i] = c
		t.Cleanup(func() { c.Close() })
	}
	return conns[0], conns[1]
}

// serveConnPair serves one socketpair connection with cfg and returns the
// client end, the log and a channel closed when the server is done.
func serveConnPair(t *testing.T, cfg Config) (net.Conn, *logBuf, <-chan struct{}) {
	t.Helper()
	lb := &logBuf{}
	s, err := New(cfg, lb)
	if err != nil {
		t.Fatal(err)
	}
	sc, cc := socketPair(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ServeConn(sc)
	}()
	cc.SetDeadline(time.Now().Add(10 * time.Second)) // bounds every test
	return cc, lb, done
}

func waitDone(t *testing.T, done <-chan struct{}, d time.Duration) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("server still serving the connection after %v", d)
	}
}

// response is a parsed response as a client sees it.
type response struct {
	Status int
	Header map[string]string // lower-case names
	Body   []byte
}

// readResponse reads one response (Content-Length framed) from br. For a
// HEAD request pass head=true: no body follows.
func readResponse(br *bufio.Reader, head bool) (*response, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	f := strings.SplitN(strings.TrimRight(line, "\r\n"), " ", 3)
	if len(f) < 2 || f[0] != "HTTP/1.1" {
		return nil, fmt.Errorf("status line %q", line)
	}
	r := &response{Header: map[string]string{}}
	if r.Status, err = strconv.Atoi(f[1]); err != nil {
		return nil, fmt.Errorf("status line %q", line)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		k, v, _ := strings.Cut(line, ":")
		r.Header[strings.ToLower(k)] = strings.TrimSpace(v)
	}
	if head {
		return r, nil
	}
	n, err := strconv.ParseInt(r.Header["content-length"], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("content-length %q", r.Header["content-length"])
	}
	r.Body = make([]byte, n)
	_, err = io.ReadFull(br, r.Body)
	return r, err
}

// roundTrip sends req and reads one response.
func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, req string) *response {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("send %q: %v", req, err)
	}
	r, err := readResponse(br, strings.HasPrefix(req, "HEAD "))
	if err != nil {
		t.Fatalf("response to %q: %v", req, err)
	}
	return r
}

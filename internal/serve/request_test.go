package serve

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func parse(t *testing.T, s string) (*Request, *bufio.Reader, error) {
	t.Helper()
	br := bufio.NewReaderSize(strings.NewReader(s), 16<<10)
	r, err := ReadRequest(br)
	return r, br, err
}

func TestReadRequest_HeadFields(t *testing.T) {
	r, br, err := parse(t, "\r\nPOST http://lb.example/up/load?x=1 HTTP/1.1\r\nHost: server\r\n"+
		"Content-Length:  5 \r\nConnection: keep-alive, close\r\n\r\nhelloNEXT")
	if err != nil {
		t.Fatal(err)
	}
	if r.Method != "POST" || r.Path() != "/up/load" || r.Major != 1 || r.Minor != 1 {
		t.Errorf("got %s %s (path %s) %d.%d", r.Method, r.Target, r.Path(), r.Major, r.Minor)
	}
	if r.ContentLength != 5 || r.Chunked || !r.HasBody() || r.Get("host") != "server" {
		t.Errorf("ContentLength %d chunked %v host %q", r.ContentLength, r.Chunked, r.Get("host"))
	}
	if r.KeepAlive() {
		t.Error("Connection: keep-alive, close must not keep the connection")
	}
	n, err := ReadBody(br, r)
	rest, _ := io.ReadAll(br)
	if err != nil || n != 5 || string(rest) != "NEXT" {
		t.Errorf("body %d, %v; left %q, want 5 bytes and NEXT left for the next request", n, err, rest)
	}
}

func TestReadRequest_KeepAliveByVersion(t *testing.T) {
	for _, tc := range []struct {
		req  string
		want bool
	}{
		{"GET / HTTP/1.1\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", false},
		{"GET / HTTP/1.0\r\n\r\n", false},
		{"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
	} {
		r, _, err := parse(t, tc.req)
		if err != nil {
			t.Fatalf("%q: %v", tc.req, err)
		}
		if got := r.KeepAlive(); got != tc.want {
			t.Errorf("%q: KeepAlive %v, want %v", tc.req, got, tc.want)
		}
	}
}

func TestReadBody_Chunked(t *testing.T) {
	r, br, err := parse(t, "PUT /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"+
		"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\nGET")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Chunked || r.ContentLength != -1 || !r.HasBody() {
		t.Fatalf("chunked %v ContentLength %d", r.Chunked, r.ContentLength)
	}
	n, err := ReadBody(br, r)
	rest, _ := io.ReadAll(br)
	if err != nil || n != 31 || string(rest) != "GET" {
		t.Errorf("body %d, %v; left %q; want 31 bytes, GET left", n, err, rest)
	}
}

func TestReadBody_TruncatedIsUnexpectedEOF(t *testing.T) {
	for _, s := range []string{
		"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
	} {
		r, br, err := parse(t, s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if _, err := ReadBody(br, r); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%q: %v, want unexpected EOF", s, err)
		}
	}
}

func TestReadRequest_Malformed(t *testing.T) {
	for _, s := range []string{
		"GET /\r\n\r\n",
		"GET  / HTTP/1.1\r\n\r\n",
		"G(T / HTTP/1.1\r\n\r\n",
		"GET / HTTP/2.0\r\n\r\n",
		"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
		"GET / HTTP/1.1\r\n folded: x\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
		"GET /" + strings.Repeat("a", maxLine) + " HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\n" + strings.Repeat("X: y\r\n", maxHeaders+1) + "\r\n",
	} {
		if _, _, err := parse(t, s); !errors.Is(err, errMalformed) {
			t.Errorf("%.60q: %v, want malformed", s, err)
		}
	}
	r, br, err := parse(t, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadBody(br, r); !errors.Is(err, errMalformed) {
		t.Errorf("chunk size zz: %v, want malformed", err)
	}
}

func TestReadRequest_EOFBeforeAnyByte(t *testing.T) {
	if _, _, err := parse(t, ""); err != io.EOF {
		t.Errorf("empty input: %v, want io.EOF", err)
	}
	if _, _, err := parse(t, "GET / HTTP/1.1\r\nHost: x\r\n"); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut head: %v, want unexpected EOF", err)
	}
}

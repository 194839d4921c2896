package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func reader(s string) *bufio.Reader { return bufio.NewReaderSize(strings.NewReader(s), 16) }

func TestReadRequest_Framing(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		body     bodyKind
		length   int64
		keep     bool
	}{
		{"get", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", bodyNone, 0, true},
		{"bare LF", "GET /a HTTP/1.1\nHost: x\n\n", bodyNone, 0, true},
		{"length", "POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", bodyLength, 5, true},
		{"chunked", "POST /a HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n", bodyChunked, 0, true},
		{"close", "GET / HTTP/1.1\r\nConnection: Keep-Alive, close\r\n\r\n", bodyNone, 0, false},
		{"1.0", "GET / HTTP/1.0\r\n\r\n", bodyNone, 0, false},
		{"1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", bodyNone, 0, true},
		{"leading CRLF", "\r\nGET / HTTP/1.1\r\n\r\n", bodyNone, 0, true},
	} {
		m, err := readRequest(reader(tc.in), 4096)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if m.body != tc.body || m.length != tc.length || m.keepAlive() != tc.keep {
			t.Errorf("%s: body %v length %d keep %v; want %v %d %v", tc.name, m.body, m.length, m.keepAlive(), tc.body, tc.length, tc.keep)
		}
	}
}

func TestReadRequest_Refuses(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"smuggling", "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "both Transfer-Encoding and Content-Length"},
		{"two lengths", "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", "conflicting Content-Length"},
		{"signed length", "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", "bad Content-Length"},
		{"gzip TE", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", "only chunked"},
		{"no version", "GET /\r\n\r\n", "bad request line"},
		{"HTTP/2", "GET / HTTP/2.0\r\n\r\n", "bad version"},
		{"folded", "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", "bad header line"},
		{"space before colon", "GET / HTTP/1.1\r\nA : b\r\n\r\n", "bad header line"},
		{"too big", "GET / HTTP/1.1\r\nA: " + strings.Repeat("x", 5000) + "\r\n\r\n", "head too large"},
	} {
		_, err := readRequest(reader(tc.in), 4096)
		if !isMalformed(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want a malformed error with %q", tc.name, err, tc.want)
		}
	}
	if _, err := readRequest(reader(""), 4096); err != io.EOF {
		t.Errorf("empty: %v; want io.EOF (client closed between requests)", err)
	}
	if _, err := readRequest(reader("GET / HT"), 4096); err != io.ErrUnexpectedEOF {
		t.Errorf("cut short: %v; want io.ErrUnexpectedEOF", err)
	}
}

func TestReadResponse_Framing(t *testing.T) {
	for _, tc := range []struct {
		name, in, method string
		body             bodyKind
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", "GET", bodyLength},
		{"head", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", "HEAD", bodyNone},
		{"204", "HTTP/1.1 204 No Content\r\n\r\n", "GET", bodyNone},
		{"304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", "GET", bodyNone},
		{"until close", "HTTP/1.1 200 OK\r\n\r\n", "GET", bodyUntilClose},
		{"no reason", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET", bodyNone},
	} {
		m, n, err := readResponse(reader(tc.in), 4096, tc.method)
		if err != nil || m.body != tc.body || n != len(tc.in) {
			t.Errorf("%s: %v body %v read %d; want body %v read %d", tc.name, err, m.body, n, tc.body, len(tc.in))
		}
	}
	for _, in := range []string{"HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 abc OK\r\n\r\n", "SSH-2.0-OpenSSH\r\n\r\n", "HTTP/1.1 200 OK\r\nbad\r\n\r\n"} {
		if _, _, err := readResponse(reader(in), 4096, "GET"); !isMalformed(err) {
			t.Errorf("%q: %v; want malformed", in, err)
		}
	}
	if _, n, err := readResponse(reader(""), 4096, "GET"); err != io.EOF || n != 0 {
		t.Errorf("nothing: %v after %d bytes; want io.EOF after 0", err, n)
	}
	if _, n, err := readResponse(reader("HTTP/1.1 200"), 4096, "GET"); err != io.ErrUnexpectedEOF || n != 12 {
		t.Errorf("cut short: %v after %d bytes; want io.ErrUnexpectedEOF after 12", err, n)
	}
}

func TestCopyChunked(t *testing.T) {
	const in = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT"
	var raw, data bytes.Buffer
	br := reader(in)
	if err := copyChunked(&raw, br, false); err != nil {
		t.Fatal(err)
	}
	if raw.String() != strings.TrimSuffix(in, "NEXT") {
		t.Errorf("raw copy %q", raw.String())
	}
	if rest, _ := io.ReadAll(br); string(rest) != "NEXT" {
		t.Errorf("read past the body: left %q", rest)
	}
	if err := copyChunked(&data, reader(in), true); err != nil || data.String() != "hello world" {
		t.Errorf("dechunked %q, %v", data.String(), err)
	}
	for _, tc := range []struct{ in, want string }{
		{"5\r\nhel", "unexpected EOF"},
		{"zz\r\n", "bad chunk size"},
		{"3\r\nhello\r\n", "longer than its size"},
		{"", "unexpected EOF"},
	} {
		err := copyChunked(io.Discard, reader(tc.in), false)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want %q", tc.in, err, tc.want)
		}
	}
}

func TestEndToEnd_DropsHopByHopAndNamedFields(t *testing.T) {
	h := headers{{"Host", "x"}, {"Connection", "keep-alive, X-Private"}, {"X-Private", "1"}, {"keep-alive", "timeout=5"}, {"TE", "trailers"}, {"Content-Length", "3"}, {"X-Ok", "2"}}
	got := endToEnd(h)
	want := headers{{"Host", "x"}, {"X-Ok", "2"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %v; want %v", got, want)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	if classify(io.EOF, 0) != failNoResponse || classify(errors.New("connection reset by peer"), 0) != failNoResponse {
		t.Error("EOF or reset before any byte must be a closed connection (504)")
	}
	if classify(io.ErrUnexpectedEOF, 5) != failMalformed || classify(badf("x"), 0) != failMalformed {
		t.Error("a cut-short or bad head must be malformed (502)")
	}
}

package serve

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits of the parser; beyond them a request is malformed (400).
const (
	maxLine    = 8 << 10 // request line, header line or chunk-size line
	maxHeaders = 100
)

// errMalformed wraps every parse error: the server answers 400 to these.
var errMalformed = errors.New("malformed request")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, args...))
}

// Request is a parsed request head.
type Request struct {
	Method, Target, Proto string
	Major, Minor          int
	Header                []HeaderField // in order, names as sent
	// ContentLength is the body length, -1 for a chunked body.
	ContentLength int64
	Chunked       bool
}

// HeaderField is one header line.
type HeaderField struct{ Name, Value string }

// Get returns the first value of header name (case-insensitive).
func (r *Request) Get(name string) string {
	for _, h := range r.Header {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// HasBody reports whether a body follows the head.
func (r *Request) HasBody() bool { return r.Chunked || r.ContentLength > 0 }

// Path is the target's path without query, also for absolute-form targets.
func (r *Request) Path() string {
	p := r.Target
	if i := strings.Index(p, "://"); i >= 0 {
		p = p[i+3:]
		if j := strings.IndexByte(p, '/'); j >= 0 {
			p = p[j:]
		} else {
			p = "/"
		}
	}
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	return p
}

// KeepAlive reports whether the client asks for a persistent connection:
// HTTP/1.1 unless "Connection: close", HTTP/1.0 only with "keep-alive".
func (r *Request) KeepAlive() bool {
	var close, keep bool
	for _, h := range r.Header {
		if !strings.EqualFold(h.Name, "Connection") {
			continue
		}
		for _, tok := range strings.Split(h.Value, ",") {
			switch strings.ToLower(strings.TrimSpace(tok)) {
			case "close":
				close = true
			case "keep-alive":
				keep = true
			}
		}
	}
	if close {
		return false
	}
	return r.Major > 1 || (r.Major == 1 && r.Minor >= 1) || keep
}

// readLine returns one CRLF- (or LF-) terminated line without its ending.
// The slice is only valid until the next read from br.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || (err == nil && len(line) > maxLine) {
		return nil, malformed("line longer than %d bytes", maxLine)
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// ReadRequest reads a request head from br. Empty lines before the request
// line are skipped (RFC 9112 section 2.2). The body is left in br.
func ReadRequest(br *bufio.Reader) (*Request, error) {
	var line []byte
	var err error
	for empties := 0; ; empties++ {
		if line, err = readLine(br); err != nil {
			return nil, err
		}
		if len(line) > 0 {
			break
		}
		if empties >= 4 {
			return nil, malformed("empty lines instead of a request line")
		}
	}
	r := &Request{ContentLength: 0}
	parts := strings.Split(string(line), " ")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return nil, malformed("request line %q", line)
	}
	r.Method, r.Target, r.Proto = parts[0], parts[1], parts[2]
	if !isToken(r.Method) {
		return nil, malformed("method %q", r.Method)
	}
	if r.Major, r.Minor, err = parseProto(r.Proto); err != nil {
		return nil, err
	}
	var cl string
	for {
		line, err := readLine(br)
		if err != nil {
			return nil, unexpectedEOF(err)
		}
		if len(line) == 0 {
			break
		}
		if len(r.Header) == maxHeaders {
			return nil, malformed("more than %d header lines", maxHeaders)
		}
		name, value, ok := strings.Cut(string(line), ":")
		if !ok || !isToken(name) {
			return nil, malformed("header line %q", line)
		}
		value = strings.Trim(value, " \t")
		r.Header = append(r.Header, HeaderField{name, value})
		switch {
		case strings.EqualFold(name, "Content-Length"):
			if cl != "" && cl != value {
				return nil, malformed("conflicting Content-Length %q and %q", cl, value)
			}
			cl = value
		case strings.EqualFold(name, "Transfer-Encoding"):
			codings := strings.Split(value, ",")
			last := strings.ToLower(strings.TrimSpace(codings[len(codings)-1]))
			if last != "chunked" {
				return nil, malformed("Transfer-Encoding %q does not end in chunked", value)
			}
			r.Chunked = true
		}
	}
	switch {
	case r.Chunked && cl != "":
		return nil, malformed("both Content-Length and Transfer-Encoding")
	case r.Chunked:
		r.ContentLength = -1
	case cl != "":
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 || cl[0] == '+' {
			return nil, malformed("Content-Length %q", cl)
		}
		r.ContentLength = n
	}
	return r, nil
}

// unexpectedEOF turns io.EOF inside a message, which cuts it short, into
// io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func parseProto(p string) (major, minor int, err error) {
	if len(p) != 8 || !strings.HasPrefix(p, "HTTP/") || p[6] != '.' ||
		p[5] < '0' || p[5] > '9' || p[7] < '0' || p[7] > '9' {
		return 0, 0, malformed("protocol %q", p)
	}
	major, minor = int(p[5]-'0'), int(p[7]-'0')
	if major != 1 {
		return 0, 0, malformed("protocol %q: only HTTP/1.x is served", p)
	}
	return major, minor, nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// ReadBody reads and discards r's body from br, returning its length.
// Errors from br (timeouts, EOF) are returned as they are.
func ReadBody(br *bufio.Reader, r *Request) (int64, error) {
	if !r.Chunked {
		n, err := io.CopyN(io.Discard, br, r.ContentLength)
		return n, unexpectedEOF(err)
	}
	var total int64
	for {
		line, err := readLine(br)
		if err != nil {
			return total, unexpectedEOF(err)
		}
		hex, _, _ := strings.Cut(string(line), ";") // chunk extensions are ignored
		hex = strings.TrimRight(hex, " \t")
		size, err := strconv.ParseUint(hex, 16, 63)
		if err != nil || hex == "" || len(hex) > 16 {
			return total, malformed("chunk size %q", line)
		}
		if size == 0 {
			break
		}
		n, err := io.CopyN(io.Discard, br, int64(size))
		total += n
		if err != nil {
			return total, unexpectedEOF(err)
		}
		if line, err = readLine(br); err != nil {
			return total, unexpectedEOF(err)
		}
		if len(line) != 0 {
			return total, malformed("chunk of %d bytes not followed by CRLF", size)
		}
	}
	for trailers := 0; ; trailers++ { // trailer section, up to the empty line
		line, err := readLine(br)
		if err != nil {
			return total, unexpectedEOF(err)
		}
		if len(line) == 0 {
			return total, nil
		}
		if trailers == maxHeaders {
			return total, malformed("more than %d trailer lines", maxHeaders)
		}
	}
}

package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// A small HTTP/1.1 reader and writer on raw connections. net/http's
// Transport is not used on purpose: it pools, retries and checks
// connections on its own, which is exactly what the proxy must control.

// bodyKind is how a message's body is delimited.
type bodyKind int

const (
	bodyNone       bodyKind = iota
	bodyLength              // Content-Length bytes
	bodyChunked             // Transfer-Encoding: chunked
	bodyUntilClose          // a response with neither: read to EOF
)

type header struct{ name, value string }

type headers []header

// get returns the first value of name (case-insensitive).
func (h headers) get(name string) (string, bool) {
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			return f.value, true
		}
	}
	return "", false
}

// hasToken reports whether any name field lists token (comma-separated,
// case-insensitive), as in `Connection: keep-alive, Upgrade`.
func (h headers) hasToken(name, token string) bool {
	for _, f := range h {
		if !strings.EqualFold(f.name, name) {
			continue
		}
		for t := range strings.SplitSeq(f.value, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// message is a request or response head with its body framing.
type message struct {
	// request line, or status line split the same way
	method, target string // requests
	status         int    // responses
	reason         string // responses
	minor          int    // HTTP/1.minor
	hdr            headers
	body           bodyKind
	length         int64
}

// keepAlive reports whether the sender of m wants the connection kept open.
func (m *message) keepAlive() bool {
	if m.hdr.hasToken("Connection", "close") {
		return false
	}
	return m.minor >= 1 || m.hdr.hasToken("Connection", "keep-alive")
}

// malformed marks a message that is not HTTP/1.x: the peer is talking, but
// not sense (a 502 from an LB), unlike a closed or reset connection.
type malformed struct{ msg string }

func (e *malformed) Error() string { return "malformed HTTP: " + e.msg }

func badf(format string, args ...any) error { return &malformed{fmt.Sprintf(format, args...)} }

// errHeadTooBig is a head over MaxHeaderBytes.
var errHeadTooBig = &malformed{"head too large"}

// headReader reads the lines of one head within a byte budget.
type headReader struct {
	br   *bufio.Reader
	left int
	read int // bytes consumed, to tell "nothing came" from "cut short"
}

// line returns the next line without its CRLF (or bare LF).
func (r *headReader) line() (string, error) {
	var buf []byte
	for i := 0; i < 64; i++ { // ReadSlice returns at most a buffer at a time
		frag, err := r.br.ReadSlice('\n')
		r.read += len(frag)
		r.left -= len(frag)
		if r.left < 0 {
			return "", errHeadTooBig
		}
		buf = append(buf, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && r.read > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		buf = bytes.TrimSuffix(buf[:len(buf)-1], []byte("\r"))
		return string(buf), nil
	}
	return "", errHeadTooBig
}

// fields reads header fields up to the empty line.
func (r *headReader) fields() (headers, error) {
	var h headers
	for i := 0; i < 1000; i++ {
		l, err := r.line()
		if err != nil {
			return nil, err
		}
		if l == "" {
			return h, nil
		}
		colon := strings.IndexByte(l, ':')
		if colon <= 0 || !isToken(l[:colon]) {
			return nil, badf("bad header line %.40q", l)
		}
		v := strings.Trim(l[colon+1:], " \t")
		if strings.ContainsAny(v, "\r\x00") {
			return nil, badf("bad header value in %.40q", l)
		}
		h = append(h, header{l[:colon], v})
	}
	return nil, badf("more than 1000 header fields")
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

func parseVersion(v string) (int, bool) {
	if len(v) != 8 || !strings.HasPrefix(v, "HTTP/1.") || v[7] < '0' || v[7] > '9' {
		return 0, false
	}
	return int(v[7] - '0'), true
}

// readRequest reads a request head. io.EOF means the client closed
// between requests.
func readRequest(br *bufio.Reader, max int) (*message, error) {
	r := &headReader{br: br, left: max}
	l, err := r.line()
	for i := 0; err == nil && l == "" && i < 4; i++ { // tolerate stray CRLFs (RFC 9112 2.2)
		l, err = r.line()
	}
	if err != nil {
		return nil, err
	}
	parts := strings.Split(l, " ")
	m := &message{}
	var ok bool
	if len(parts) != 3 || !isToken(parts[0]) || parts[1] == "" {
		return nil, badf("bad request line %.60q", l)
	}
	if m.minor, ok = parseVersion(parts[2]); !ok {
		return nil, badf("bad version in %.60q", l)
	}
	m.method, m.target = parts[0], parts[1]
	if m.hdr, err = r.fields(); err != nil {
		return nil, err
	}
	return m, m.framing(true, "")
}

// readResponse reads a response head to a request with method.
func readResponse(br *bufio.Reader, max int, method string) (*message, int, error) {
	r := &headReader{br: br, left: max}
	l, err := r.line()
	if err != nil {
		return nil, r.read, err
	}
	m := &message{}
	version, rest, _ := strings.Cut(l, " ")
	code, reason, _ := strings.Cut(rest, " ")
	var ok bool
	if m.minor, ok = parseVersion(version); !ok {
		return nil, r.read, badf("bad status line %.60q", l)
	}
	if len(code) != 3 {
		return nil, r.read, badf("bad status code in %.60q", l)
	}
	if m.status, err = strconv.Atoi(code); err != nil || m.status < 100 {
		return nil, r.read, badf("bad status code in %.60q", l)
	}
	m.reason = reason
	if m.hdr, err = r.fields(); err != nil {
		return nil, r.read, err
	}
	return m, r.read, m.framing(false, method)
}

// framing works out how the body is delimited (RFC 9112 6.3), refusing
// the ambiguous cases request smuggling is made of.
func (m *message) framing(isReq bool, method string) error {
	if !isReq && (m.status < 200 || m.status == 204 || m.status == 304 || method == "HEAD") {
		m.body = bodyNone
		return nil
	}
	te, hasTE := m.hdr.get("Transfer-Encoding")
	var cl string
	var hasCL bool
	for _, f := range m.hdr {
		if strings.EqualFold(f.name, "Content-Length") {
			if hasCL && f.value != cl {
				return badf("conflicting Content-Length")
			}
			cl, hasCL = f.value, true
		}
	}
	switch {
	case hasTE && hasCL:
		return badf("both Transfer-Encoding and Content-Length")
	case hasTE:
		if !strings.EqualFold(strings.TrimSpace(te), "chunked") {
			return badf("Transfer-Encoding %q (only chunked is supported)", te)
		}
		m.body = bodyChunked
	case hasCL:
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 || strings.HasPrefix(cl, "+") {
			return badf("bad Content-Length %q", cl)
		}
		m.body, m.length = bodyLength, n
		if n == 0 {
			m.body = bodyNone
		}
	case isReq:
		m.body = bodyNone
	default:
		m.body = bodyUntilClose
	}
	return nil
}

// copyBody copies m's body from src to dst. A chunked body is copied as
// is (chunk lines and trailers) unless dechunk, which writes only the data.
func copyBody(dst io.Writer, src *bufio.Reader, m *message, dechunk bool) error {
	switch m.body {
	case bodyLength:
		n, err := io.CopyN(dst, src, m.length)
		if err == io.EOF && n < m.length {
			err = io.ErrUnexpectedEOF
		}
		return err
	case bodyChunked:
		return copyChunked(dst, src, dechunk)
	case bodyUntilClose:
		_, err := io.Copy(dst, src)
		return err
	}
	return nil
}

// maxChunks bounds the chunk loop: 16M chunks of at least one byte each.
const maxChunks = 1 << 24

func copyChunked(dst io.Writer, src *bufio.Reader, dechunk bool) error {
	r := &headReader{br: src}
	raw := func(s string) error {
		if dechunk {
			return nil
		}
		_, err := io.WriteString(dst, s+"\r\n")
		return err
	}
	for i := 0; i < maxChunks; i++ {
		r.left = 4096 // per chunk-size line
		l, err := r.line()
		if err != nil {
			return eofIsUnexpected(err)
		}
		hexSize, _, _ := strings.Cut(l, ";")
		hexSize = strings.TrimSpace(hexSize)
		n, perr := strconv.ParseUint(hexSize, 16, 63)
		if perr != nil || hexSize == "" || len(hexSize) > 15 {
			return badf("bad chunk size line %.40q", l)
		}
		if err := raw(l); err != nil {
			return err
		}
		if n == 0 {
			r.left = 64 << 10 // trailers
			for j := 0; j < 1000; j++ {
				t, err := r.line()
				if err != nil {
					return eofIsUnexpected(err)
				}
				if err := raw(t); err != nil || t == "" {
					return err
				}
			}
			return badf("too many trailer fields")
		}
		if _, err := io.CopyN(dst, src, int64(n)); err != nil {
			return eofIsUnexpected(err)
		}
		if err := crlf(src); err != nil {
			return err
		}
		if err := raw(""); err != nil {
			return err
		}
	}
	return badf("more than %d chunks", maxChunks)
}

// crlf reads the line end after a chunk's data.
func crlf(src *bufio.Reader) error {
	c, err := src.ReadByte()
	if err == nil && c == '\r' {
		c, err = src.ReadByte()
	}
	if err != nil {
		return eofIsUnexpected(err)
	}
	if c != '\n' {
		return badf("chunk data longer than its size")
	}
	return nil
}

func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// hopByHop lists the fields that describe one connection, not the message
// (RFC 9110 7.6.1), plus the framing fields the proxy writes itself.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Upgrade", "Transfer-Encoding", "Content-Length"}

// endToEnd returns the fields of h that a correct proxy forwards: no
// hop-by-hop field, nor any field that Connection names.
func endToEnd(h headers) headers {
	out := make(headers, 0, len(h))
	for _, f := range h {
		drop := false
		for _, hop := range hopByHop {
			drop = drop || strings.EqualFold(f.name, hop)
		}
		drop = drop || h.hasToken("Connection", f.name)
		if !drop {
			out = append(out, f)
		}
	}
	return out
}

// appendFraming writes the framing field of a body of kind k.
func appendFraming(b []byte, m *message) []byte {
	switch m.body {
	case bodyLength:
		b = fmt.Appendf(b, "Content-Length: %d\r\n", m.length)
	case bodyChunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	return b
}

func appendFields(b []byte, h headers) []byte {
	for _, f := range h {
		b = append(b, f.name...)
		b = append(b, ": "...)
		b = append(b, f.value...)
		b = append(b, "\r\n"...)
	}
	return b
}

// errorResponse is the body-carrying response the proxy itself sends.
func errorResponse(status int, keep bool) []byte {
	text := map[int]string{400: "Bad Request", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}[status]
	body := fmt.Sprintf("%d %s\n", status, text)
	conn := "keep-alive"
	if !keep {
		conn = "close"
	}
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n%s", status, text, len(body), conn, body)
}

// isMalformed reports whether err is a protocol error, not an I/O one.
func isMalformed(err error) bool {
	var m *malformed
	return errors.As(err, &m)
}

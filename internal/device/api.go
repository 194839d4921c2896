package device

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/faultbox/faultbox/internal/api"
)

// The control API (internal/api) is served on the unix socket
// control.sock, 0600 in the 0700 runtime directory, and, when the device
// was started with an API address, on TCP with a bearer token: the one in
// the state's APITokenFile, else a random one kept in api.token (0600)
// beside the state.

// TokenPath is where the TCP API's bearer token is kept.
func TokenPath(name string) string { return filepath.Join(Dir(name), "api.token") }

// CheckAPIAddr checks a TCP address for the API: host:port with a loopback
// host (127.0.0.1, ::1, localhost) unless allowRemote.
func CheckAPIAddr(addr string, allowRemote bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return InputErrorf("api address %q: want HOST:PORT, e.g. 127.0.0.1:7070", addr)
	}
	if allowRemote || host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return InputErrorf("api address %q is not a loopback address: anyone who reaches it and has the token controls the device; "+
			"add --api-allow-remote to serve it there anyway", addr)
	}
	return nil
}

// MinTokenLen is the shortest bearer token a token file may hold.
const MinTokenLen = 16

// ReadAPIToken reads a bearer token from file: one line of at least
// MinTokenLen printable characters, without spaces.
func ReadAPIToken(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", InputErrorf("api token file: %v", err)
	}
	token := strings.TrimSpace(string(data))
	if len(token) < MinTokenLen || strings.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return "", InputErrorf("api token file %s: want one line of at least %d printable characters without spaces (e.g. openssl rand -hex 32)", file, MinTokenLen)
	}
	return token, nil
}

// WriteAPISummary tells the user who started the device where its TCP API
// is and its token: the one time a random token is printed. Without a TCP
// API it writes nothing.
func WriteAPISummary(w io.Writer, st *State) error {
	if st.API == "" {
		return nil
	}
	addr := st.API
	if s, err := GetStatus(st.Name); err == nil && s.API != "" {
		addr = s.API // the port it was given, if that was 0
	}
	if st.APITokenFile != "" {
		_, err := fmt.Fprintf(w, "api http://%s/v1/ (bearer token from %s)\n", addr, st.APITokenFile)
		return err
	}
	token, err := os.ReadFile(TokenPath(st.Name))
	if err != nil {
		return fmt.Errorf("api token: %w", err)
	}
	_, err = fmt.Fprintf(w, "api http://%s/v1/ (bearer token %s, kept in %s)\n", addr, strings.TrimSpace(string(token)), TokenPath(st.Name))
	return err
}

// listen opens the control socket and, if asked, the TCP listener.
func (d *Device) listen() error {
	d.api = api.New(d, d.log)
	path := socketPath(d.state.Name)
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	d.listeners = append(d.listeners, listener{ln: ln})
	if d.state.API == "" {
		return nil
	}
	if err := CheckAPIAddr(d.state.API, d.state.APIAllowRemote); err != nil {
		return err
	}
	token, from, err := d.apiToken()
	if err != nil {
		return err
	}
	tcp, err := net.Listen("tcp", d.state.API)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	d.listeners = append(d.listeners, listener{ln: tcp, token: token})
	d.apiAddr = tcp.Addr().String()
	d.log.Printf("api: serving on %s (bearer token in %s)", tcp.Addr(), from)
	return nil
}

// apiToken is the TCP API's bearer token and the file it is in: the
// state's token file's, else a new random one written to api.token.
func (d *Device) apiToken() (token, file string, err error) {
	if file = d.state.APITokenFile; file != "" {
		token, err = ReadAPIToken(file)
		return token, file, err
	}
	if token, err = newToken(); err != nil {
		return "", "", err
	}
	file = TokenPath(d.state.Name)
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("api token: %w", err)
	}
	return token, file, nil
}

// listener is one of the API's listeners; TCP ones need the token.
type listener struct {
	ln    net.Listener
	token string
}

// serve answers the API on every listener until the device stops.
func (d *Device) serve() {
	for _, l := range d.listeners {
		go func() {
			if err := d.api.Serve(l.ln, l.token); err != nil {
				d.log.Printf("api %s: %v", l.ln.Addr(), err)
			}
		}()
	}
}

// newToken is 32 random bytes in hex.
func newToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

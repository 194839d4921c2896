package scenario

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/faultbox/faultbox/internal/lab"
)

// Apache is one Apache httpd 2.4 with the event MPM (Debian's default) that
// a scenario runs in a lab host, in the foreground.
type Apache struct {
	Name    string // process name: NAME.conf and the directory NAME/ (logs, PID file) in the report
	Host    string // lab host; it listens on the host's IPv4 and IPv6 address
	Ports   []int
	Docroot string // the documents: see Docroot
	// Directives go at the end of the configuration, one per line:
	// Timeout, KeepAliveTimeout, AcceptFilter ...
	Directives []string
	Prefix     []string // before the command, such as nice -n -10
	Comment    string   // the configuration's first line
}

// Docroot makes a directory for servers' documents, holding index as
// index.html. Their workers run as an unprivileged user, which cannot read
// the report directory (0700, or under a test's 0700 TempDir), so it is a
// directory of its own, mode 0755: remove it when Drive ends.
func Docroot(index []byte) (string, error) {
	dir, err := os.MkdirTemp("", "fbx-docroot-")
	if err != nil {
		return "", err
	}
	err = os.Chmod(dir, 0o755)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "index.html"), index, 0o644)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// StartApache writes a's configuration into the report directory and
// starts apache2 with it. Its access log (NAME/access.log) has one line per
// request: the time, the client's address and port, the request line, the
// status and the time taken in microseconds.
func (c *Context) StartApache(a Apache) (*Proc, error) {
	bin, err := exec.LookPath("apache2")
	if err != nil {
		return nil, fmt.Errorf("apache2 is not installed (scripts/deps.sh installs it): %w", err)
	}
	dir := filepath.Join(c.Dir, a.Name)
	conf, err := a.config(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path, err := c.WriteFile(a.Name+".conf", []byte(conf))
	if err != nil {
		return nil, err
	}
	return c.Start(a.Host, a.Name, append(slices.Clone(a.Prefix), bin, "-f", path, "-DFOREGROUND")...)
}

// config is a's httpd.conf, its files in dir.
func (a Apache) config(dir string) (string, error) {
	v4, v6, ok := lab.HostAddrs(a.Host)
	if !ok {
		return "", fmt.Errorf("apache %s: %q is not a lab host", a.Name, a.Host)
	}
	var listen strings.Builder
	for _, p := range a.Ports {
		fmt.Fprintf(&listen, "Listen %s:%d\nListen [%s]:%d\n", v4, p, v6, p)
	}
	return fmt.Sprintf(`# %[1]s
ServerRoot %[2]s
DefaultRuntimeDir %[2]s
PidFile %[2]s/httpd.pid
ErrorLog %[2]s/error.log
LogLevel info
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
User www-data
Group www-data
ServerName %[3]s
%[4]sDocumentRoot %[5]s
<Directory %[5]s>
  Require all granted
</Directory>
DirectoryIndex index.html
TypesConfig /etc/mime.types
LogFormat "%%{%%s}t.%%{msec_frac}t %%a:%%{remote}p \"%%r\" %%>s %%D" fbx
CustomLog %[2]s/access.log fbx
%[6]s
`, a.Comment, dir, a.Host, listen.String(), a.Docroot, strings.Join(a.Directives, "\n")), nil
}

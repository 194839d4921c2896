package scenario

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An Apache listens on its host's IPv4 and IPv6 address on every port,
// keeps its files in its directory, and ends with the scenario's own
// directives, which override what comes before.
func TestApacheConfig(t *testing.T) {
	a := Apache{Name: "apache", Host: "server", Ports: []int{8607, 8608}, Docroot: "/tmp/docs",
		Directives: []string{"KeepAliveTimeout 1", "AcceptFilter http none"}, Comment: "a test"}
	conf, err := a.config("/r/apache")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# a test\n", "Listen 198.18.0.2:8607\nListen [2001:db8::2]:8607\nListen 198.18.0.2:8608\n",
		"PidFile /r/apache/httpd.pid\n", "DocumentRoot /tmp/docs\n<Directory /tmp/docs>\n", "mod_mpm_event.so\n",
		`LogFormat "%{%s}t.%{msec_frac}t %a:%{remote}p \"%r\" %>s %D" fbx`} {
		if !strings.Contains(conf, want) {
			t.Errorf("configuration lacks %q:\n%s", want, conf)
		}
	}
	if !strings.HasSuffix(conf, "\nKeepAliveTimeout 1\nAcceptFilter http none\n") {
		t.Errorf("configuration does not end with the directives:\n%s", conf)
	}
	if _, err := (Apache{Name: "x", Host: "nowhere"}).config("/r/x"); err == nil || !strings.Contains(err.Error(), `"nowhere" is not a lab host`) {
		t.Errorf("unknown host: %v", err)
	}
}

// A docroot is readable by a server's unprivileged workers.
func TestDocroot(t *testing.T) {
	dir, err := Docroot([]byte("hello\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Fatalf("docroot %s: mode %v, want 0755", dir, fi.Mode().Perm())
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil || string(b) != "hello\n" {
		t.Fatalf("index.html: %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "index.html")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("index.html: %v, want mode 0644", fi)
	}
}

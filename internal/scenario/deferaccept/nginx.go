package deferaccept

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/faultbox/faultbox/internal/scenario"
)

// dx-defer-accept-nginx: dx-defer-accept with nginx `listen ... deferred`
// (docs/field-failures.md#juniper-dx-defer-accept).
//
// nginx sets a short TCP_DEFER_ACCEPT on a deferred listener whatever
// client_header_timeout is, so the defer period is short: the DX's bare
// ACK is swallowed, one SYN-ACK retransmit ends the deferral, the
// connection is accepted, and nginx closes it with a FIN after
// client_header_timeout; a later request gets an empty reply and a RST.
// Without `deferred` nginx accepts at once and closes after the same
// timeout. The requests go out inside the defer period, before both
// closes, between them (without deferred it fails, with it not), and
// after both. The window between the two closes is only the defer period
// wide; the request aimed into it sits early, because a loaded machine
// only ever makes a request late.

// nginx's timers in the run (defaults: client_header_timeout 60s,
// keepalive_timeout 75s).
const (
	nginxHeaderTimeout = 3
	nginxKeepAlive     = 2
)

var nginxRun = &poolRun{
	Server: "nginx",
	Arms: poolArms(
		"listen ... deferred (TCP_DEFER_ACCEPT); the DX uses whatever it pooled",
		"listen without deferred; same DX",
		"listen ... deferred, but the DX checks a pooled connection before reuse (check_before_reuse: true)",
	),
	Ages:     []time.Duration{500 * time.Millisecond, 2 * time.Second, 3400 * time.Millisecond, 6 * time.Second},
	Deadline: 5 * time.Second,
	Sample:   20 * time.Millisecond,
	Start:    startNginx,
	Notes: []string{
		"On this kernel `deferred` does not cause the blank page by itself: the deferred connection is accepted after the " +
			"defer period and nginx's client_header_timeout closes it, as it closes a connection accepted at once, 1 s earlier. " +
			"The blank page comes from the DX reusing a connection the server has closed; a DX that checks before reuse (C) is fine.",
		fmt.Sprintf("nginx ran with client_header_timeout %ds and keepalive_timeout %ds (defaults 60s and 75s) so the run takes "+
			"seconds.", nginxHeaderTimeout, nginxKeepAlive),
	},
}

func init() {
	nginxRun.register(&scenario.Scenario{
		Name:    "dx-defer-accept-nginx",
		Summary: "Juniper DX idle pool vs nginx `listen ... deferred`: blank pages, with and without deferred and with a checking DX",
		Description: "The Juniper DX failure of dx-defer-accept (Launchpad bug 134274) with nginx instead of Apache: its " +
			"`listen ... deferred` sets TCP_DEFER_ACCEPT (1 s in nginx 1.22, whatever client_header_timeout is; read back from " +
			"the listener in this run). The DX opens 6 pooled connections per backend with no request; the kernel swallows " +
			"their bare ACKs, retransmits one SYN-ACK after ~1 s and accepts; nginx closes each idle connection after " +
			"client_header_timeout (3 s here, default 60 s) with a FIN the DX does not notice, and the DX's next request on it " +
			"gets an empty reply. Arms side by side: A deferred, B without deferred, C deferred with a DX that checks its " +
			"pooled connections before reuse. Requests at idle 0.5, 2, 3.4 and 6 s: on this kernel deferred shifts nginx's " +
			"close by the 1 s defer period (A fails from 4 s, B from 3 s) and C never fails.",
		Budget: 25 * time.Second,
	})
}

// startNginx writes an nginx.conf for arm a into the report directory and
// starts nginx (master in the foreground, one worker) in the server host.
func startNginx(c *scenario.Context, a poolArm, deferOn bool, _ string) (*scenario.Proc, string, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		return nil, "", fmt.Errorf("nginx is not installed (scripts/deps.sh installs it): %w", err)
	}
	name := "nginx-" + strings.ToLower(a.Name)
	dir := filepath.Join(c.Dir, name)
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, "", err
	}
	opt, desc := " deferred", "nginx, listen ... deferred"
	if !deferOn {
		opt, desc = "", "nginx, listen without deferred"
	}
	conf := fmt.Sprintf(`# %[1]s: arm %[2]s of dx-defer-accept-nginx
pid %[3]s/nginx.pid;
error_log %[3]s/error.log info;
worker_processes 1;
events { worker_connections 256; }
http {
  access_log %[3]s/access.log;
  client_body_temp_path %[3]s/tmp/body;
  proxy_temp_path %[3]s/tmp/proxy;
  fastcgi_temp_path %[3]s/tmp/fastcgi;
  uwsgi_temp_path %[3]s/tmp/uwsgi;
  scgi_temp_path %[3]s/tmp/scgi;
  # defaults 60s and 75s: shortened for the run
  client_header_timeout %[5]ds;
  keepalive_timeout %[6]ds;
  server {
    listen 198.18.0.2:%[4]d%[7]s;
    listen [2001:db8::2]:%[4]d%[7]s;
    location / { return 200 "hello from nginx arm %[2]s\n"; }
  }
}
`, name, a.Name, dir, a.Port, nginxHeaderTimeout, nginxKeepAlive, opt)
	path, err := c.WriteFile(name+".conf", []byte(conf))
	if err != nil {
		return nil, "", err
	}
	p, err := c.Start("server", name, bin, "-c", path, "-p", dir, "-g", "daemon off;")
	if err != nil {
		return nil, "", err
	}
	return p, fmt.Sprintf("%s, client_header_timeout %ds", desc, nginxHeaderTimeout), nil
}

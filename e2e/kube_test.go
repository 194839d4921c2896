package e2e

// faultbox in Kubernetes, as far as a machine without a cluster can run it:
// the image built by make image's script, and deploy/kubernetes/sidecar.yaml
// played by podman kube play, which runs a Deployment's pod as a kubelet
// would: an infra container holding the pod's network namespace and the
// pod's containers sharing it. The test is the node, its CNI plugin and
// the container runtime where Podman is not: a "node" namespace routes
// between the pod's namespace and a client namespace on another network
// (as a Service range is, seen from a pod), wired with veth pairs, and the
// test sets the pod's sysctls (podman 4.3 ignores them).
// docs/kubernetes.md says what Podman needed.

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"

	fblab "github.com/faultbox/faultbox/internal/lab"
	"github.com/faultbox/faultbox/internal/testenv"
)

// The pod's network 198.18.21.0/24 and 2001:db8:21::/64 (the pod .2, the
// node .254 and ::fe) and the client's 198.18.22.0/24 and 2001:db8:22::/64
// (the client .1, the node .254 and ::fe); faultbox is put in front of the
// client's network.
const (
	kubePod4, kubePod6       = "198.18.21.2", "2001:db8:21::2"
	kubeClient4, kubeClient6 = "198.18.22.1", "2001:db8:22::1"
	kubeTo                   = "198.18.22.0/24,2001:db8:22::/64"
	kubeAppPort              = 8080
	kubeAPIPort              = 7070
	// The test's profile: this much delay each way, so a TCP connect (SYN
	// out, SYN-ACK back) takes twice as long more.
	kubeDelay = 50 * time.Millisecond
)

// podmanConf is the containers.conf make image and these tests use.
var podmanConf, _ = filepath.Abs("../deploy/podman/containers.conf")

// podman runs podman with the project's containers.conf.
func podman(timeout time.Duration, args ...string) testenv.Result {
	return testenv.Run(timeout, "env", append([]string{"CONTAINERS_CONF=" + podmanConf, "podman"}, args...)...)
}

func mustPodman(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	r := podman(timeout, args...)
	if r.Code != 0 {
		t.Fatalf("podman %s: %s", strings.Join(args, " "), r)
	}
	return strings.TrimSpace(r.Stdout)
}

// requireKube fails (CI) or skips the test without what it needs.
func requireKube(t *testing.T) {
	t.Helper()
	testenv.RequireNetAdmin(t)
	for _, tool := range []string{"podman", "runc", "nsenter", "curl", "setcap", "getcap", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool+" (scripts/deps.sh installs it)")
		}
	}
}

// kubeImage builds the image with scripts/image.sh as IMAGE:VERSION, both
// unique to the test, and removes it when the test ends.
func kubeImage(t *testing.T, uniq string) (image, version string) {
	t.Helper()
	repo, version := "localhost/"+uniq, "e2e-"+uniq
	t.Cleanup(func() {
		if r := podman(60*time.Second, "rmi", "-f", repo+":"+version, repo+":latest"); r.Code != 0 {
			t.Errorf("podman rmi: %s", r)
		}
	})
	r := testenv.Run(10*time.Minute, "env", "CONTAINERS_CONF="+podmanConf, "../scripts/image.sh", version, repo)
	if r.Code != 0 {
		t.Fatalf("scripts/image.sh: %s", r)
	}
	return repo + ":" + version, version
}

// TestKube_ImageSidecarPerNode builds the image, checks what is in it and
// that its non-root user gets NET_ADMIN the way Kubernetes runtimes give
// it, then plays the sidecar manifest: the fault is measured from a
// client, killing the faultbox container leaves the application reachable
// without it, a restarted one puts it back, SIGTERM restores the pod's
// namespace exactly, and kube down leaves nothing behind. Last, the
// per-node container attaches by PID and detaches when stopped.
func TestKube_ImageSidecarPerNode(t *testing.T) {
	t.Parallel()
	requireKube(t)
	uniq := fblab.UniqueName("fbx-kube-")
	image, version := kubeImage(t, uniq)

	t.Run("image", func(t *testing.T) { checkImage(t, image, version) })
	t.Run("file capability under runc", func(t *testing.T) { checkFileCapability(t, image) })
	t.Run("sidecar under kube play", func(t *testing.T) { checkSidecar(t, image, uniq) })
	t.Run("per node with podman run", func(t *testing.T) { checkPerNode(t, image, uniq) })
}

// checkImage: the image is the binary alone, root's but for /run/faultbox,
// runs as uid 65532 and says the version it is tagged with.
func checkImage(t *testing.T, image, version string) {
	out := mustPodman(t, 60*time.Second, "run", "--rm", "--network", "none", image, "version")
	if !strings.HasPrefix(out, "faultbox "+version+" (") {
		t.Errorf("faultbox version in the image: %q, want faultbox %s (...)", out, version)
	}
	// Without NET_ADMIN the binary still runs, and attach says what is
	// missing (in a namespace of its own, --network none).
	if r := podman(60*time.Second, "run", "--rm", "--network", "none", "--cap-drop", "ALL", image, "attach", "--netns", "self", "--to", "198.18.0.0/15"); r.Code == 0 || !strings.Contains(r.Stderr, "CAP_NET_ADMIN") {
		t.Errorf("attach in the image without NET_ADMIN: %s; want a failure that names CAP_NET_ADMIN", r)
	}
	cfg := mustPodman(t, 30*time.Second, "image", "inspect", "-f", "{{.Config.User}} {{json .Config.Entrypoint}}", image)
	if cfg != `65532:65532 ["/usr/local/bin/faultbox"]` {
		t.Errorf("image user and entrypoint: %s", cfg)
	}
	root := mustPodman(t, 30*time.Second, "image", "mount", image)
	defer podman(30*time.Second, "image", "unmount", image)
	var files []string
	filepath.Walk(root, func(path string, fi os.FileInfo, err error) error {
		if err != nil || path == root {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(root, path)
		files = append(files, fmt.Sprintf("%s %o %d:%d", rel, fi.Mode().Perm(), st.Uid, st.Gid))
		return nil
	})
	want := []string{"run 755 0:0", "run/faultbox 700 65532:65532", "usr 755 0:0", "usr/local 755 0:0", "usr/local/bin 755 0:0", "usr/local/bin/faultbox 755 0:0"}
	if !slices.Equal(files, want) {
		t.Errorf("the image holds\n  %s\nwant\n  %s", strings.Join(files, "\n  "), strings.Join(want, "\n  "))
	}
	if r := testenv.Run(10*time.Second, "getcap", filepath.Join(root, "usr/local/bin/faultbox")); !strings.Contains(r.Stdout, "cap_net_admin=p") {
		t.Errorf("getcap on the image's binary: %s; want cap_net_admin=p", r)
	}
	if f, err := elf.Open(filepath.Join(root, "usr/local/bin/faultbox")); err != nil {
		t.Errorf("the image's binary: %v", err)
	} else {
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("the image's binary is linked dynamically (it has an interpreter): the image has no libc")
			}
		}
	}
}

// checkFileCapability runs the image's binary with runc as a Kubernetes
// runtime would for a non-root container given NET_ADMIN: the capability
// in its bounding, permitted and effective sets but not the ambient one
// (Podman adds that; Kubernetes has no field for it). Through the file
// capability it gets NET_ADMIN, also with no_new_privs; without NET_ADMIN
// granted it gets nothing, and still runs.
func checkFileCapability(t *testing.T, image string) {
	root := mustPodman(t, 30*time.Second, "image", "mount", image)
	defer podman(30*time.Second, "image", "unmount", image)
	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "usr/local/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(rootfs, "usr/local/bin/faultbox")
	if r := testenv.Run(30*time.Second, "cp", "--preserve=mode,xattr", filepath.Join(root, "usr/local/bin/faultbox"), bin); r.Code != 0 {
		t.Fatalf("cp: %s", r)
	}
	if r := testenv.Run(30*time.Second, "runc", "spec", "--bundle", bundle); r.Code != 0 {
		t.Fatalf("runc spec: %s", r)
	}
	for _, c := range []struct {
		name    string
		caps    []string
		nnp     bool
		wantEff uint64
	}{
		{"NET_ADMIN", []string{"CAP_NET_ADMIN"}, false, 1 << unix.CAP_NET_ADMIN},
		{"NET_ADMIN, no_new_privs", []string{"CAP_NET_ADMIN"}, true, 1 << unix.CAP_NET_ADMIN},
		{"nothing", nil, true, 0},
	} {
		eff, err := runcCapEff(t, bundle, c.caps, c.nnp)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if eff != c.wantEff {
			t.Errorf("%s granted: uid 65532 has CapEff %#x, want %#x", c.name, eff, c.wantEff)
		}
	}
}

// runcCapEff runs `faultbox serve` as uid 65532 in a runc container with
// caps (bounding, permitted, effective) and reports its effective set.
func runcCapEff(t *testing.T, bundle string, caps []string, nnp bool) (uint64, error) {
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		return 0, err
	}
	if caps == nil {
		caps = []string{}
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["user"] = map[string]any{"uid": 65532, "gid": 65532}
	proc["args"] = []string{"/usr/local/bin/faultbox", "serve", "--listen", ":0", "--log", "/dev/null"}
	proc["env"] = []string{"PATH=/usr/local/bin"}
	proc["noNewPrivileges"] = nnp
	proc["capabilities"] = map[string]any{"bounding": caps, "permitted": caps, "effective": caps}
	delete(proc, "rlimits") // the host caps them (docs/kubernetes.md)
	if data, err = json.Marshal(spec); err != nil {
		return 0, err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return 0, err
	}
	id := "fbx-kube-runc-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatBool(nnp) + strconv.Itoa(len(caps))
	// runc's output to a file, not a pipe: the container keeps it open.
	logf, err := os.CreateTemp(bundle, "runc-*.log")
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	run := exec.Command("runc", "run", "--detach", "--bundle", bundle, id)
	run.Stdout, run.Stderr = logf, logf
	if err := run.Run(); err != nil {
		out, _ := os.ReadFile(logf.Name())
		return 0, fmt.Errorf("runc run: %v: %s", err, out)
	}
	defer testenv.Run(30*time.Second, "runc", "delete", "--force", id)
	var state struct{ Pid int }
	r := testenv.Run(10*time.Second, "runc", "state", id)
	if err := json.Unmarshal([]byte(r.Stdout), &state); err != nil || state.Pid == 0 {
		return 0, fmt.Errorf("runc state: %s", r)
	}
	// Listening, faultbox is past the start of main, where it raises its
	// capabilities.
	for deadline := time.Now().Add(10 * time.Second); !listening(state.Pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logf.Name())
			return 0, fmt.Errorf("faultbox serve in the container does not listen after 10 s: %s", out)
		}
	}
	uid, eff, err := procCaps(state.Pid)
	if err != nil {
		return 0, err
	}
	if uid != 65532 {
		return 0, fmt.Errorf("the process runs as uid %d", uid)
	}
	return eff, nil
}

// listening reports whether process pid's network namespace has a
// listening TCP socket (the container's namespace is its own).
func listening(pid int) bool {
	for _, f := range []string{"tcp", "tcp6"} {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		for _, line := range strings.Split(string(data), "\n")[1:] {
			if fields := strings.Fields(line); len(fields) > 3 && fields[3] == "0A" {
				return true
			}
		}
	}
	return false
}

// procCaps reads a process's real uid and effective capabilities.
func procCaps(pid int) (uid int, eff uint64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	uid = -1
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			uid, _ = strconv.Atoi(strings.Fields(v)[0])
		}
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			eff, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return uid, eff, err
}

// kubeNet is the network a node gives a pod, built by the test: a "node"
// namespace routing between the pod's namespace and a client's, wired
// with veth pairs, as a CNI plugin would wire a pod.
type kubeNet struct {
	t            *testing.T
	node, client string // namespaces the test made
	pod          string // the pod's network namespace, as a path
}

// newKubeNet makes the node and client namespaces and wires the pod's
// namespace (peer: a PID or a namespace name, as ip link takes it; path:
// the same as a path) to the node. They are removed when the test ends.
func newKubeNet(t *testing.T, peer, path string) *kubeNet {
	t.Helper()
	n := &kubeNet{t: t, node: testenv.NewNetns(t, "kubenode"), client: testenv.NewNetns(t, "kubecli"), pod: path}
	for _, args := range [][]string{
		{n.node, "link", "set", "lo", "up"},
		{n.node, "link", "add", "pod", "type", "veth", "peer", "name", "eth0", "netns", peer},
		{n.node, "link", "add", "client", "type", "veth", "peer", "name", "eth0", "netns", n.client},
		{n.node, "addr", "add", "198.18.21.254/24", "dev", "pod"},
		{n.node, "addr", "add", "2001:db8:21::fe/64", "dev", "pod", "nodad"},
		{n.node, "addr", "add", "198.18.22.254/24", "dev", "client"},
		{n.node, "addr", "add", "2001:db8:22::fe/64", "dev", "client", "nodad"},
		{n.node, "link", "set", "pod", "up"},
		{n.node, "link", "set", "client", "up"},
		{n.client, "link", "set", "lo", "up"},
		{n.client, "addr", "add", kubeClient4 + "/24", "dev", "eth0"},
		{n.client, "addr", "add", kubeClient6 + "/64", "dev", "eth0", "nodad"},
		{n.client, "link", "set", "eth0", "up"},
		{n.client, "route", "add", "default", "via", "198.18.22.254"},
		{n.client, "-6", "route", "add", "default", "via", "2001:db8:22::fe"},
	} {
		testenv.IP(t, args[0], args[1:]...)
	}
	if r := testenv.Run(10*time.Second, "ip", "netns", "exec", n.node, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"); r.Code != 0 {
		t.Fatalf("forwarding in the node namespace: %s", r)
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", kubePod4 + "/24", "dev", "eth0"},
		{"addr", "add", kubePod6 + "/64", "dev", "eth0", "nodad"},
		{"link", "set", "eth0", "up"},
		{"route", "add", "default", "via", "198.18.21.254"},
		{"-6", "route", "add", "default", "via", "2001:db8:21::fe"},
	} {
		n.mustIn(append([]string{"ip"}, args...)...)
	}
	// eth0's link-local address is there and past duplicate address
	// detection before a snapshot, which lists its routes.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ll := n.in(5*time.Second, "ip", "-6", "addr", "show", "dev", "eth0", "scope", "link")
		tentative := n.in(5*time.Second, "ip", "-6", "addr", "show", "tentative")
		if ll.Code == 0 && strings.Contains(ll.Stdout, "fe80::") && tentative.Code == 0 && strings.TrimSpace(tentative.Stdout) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pod's IPv6 addresses are still tentative after 10 s")
		}
	}
	return n
}

// in runs a command in the pod's network namespace (the host's file
// system and tools: the image has none).
func (n *kubeNet) in(timeout time.Duration, args ...string) testenv.Result {
	return testenv.Run(timeout, "nsenter", append([]string{"--net=" + n.pod, "--"}, args...)...)
}

func (n *kubeNet) mustIn(args ...string) string {
	n.t.Helper()
	r := n.in(30*time.Second, args...)
	if r.Code != 0 {
		n.t.Fatalf("in the pod: %s: %s", strings.Join(args, " "), r)
	}
	return r.Stdout
}

// snapshot is what attach changes in the pod's namespace: rules, routes
// of every table, the interfaces, the sysctls it may write.
func (n *kubeNet) snapshot() string {
	var b strings.Builder
	for _, args := range [][]string{
		{"ip", "rule"}, {"ip", "-6", "rule"},
		{"ip", "-4", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"},
		{"ip", "-br", "link"},
		{"sysctl", "net.ipv4.ip_early_demux", "net.ipv4.conf.all.forwarding", "net.ipv4.conf.eth0.forwarding",
			"net.ipv6.conf.all.forwarding", "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.accept_local",
			"net.ipv4.conf.default.rp_filter", "net.ipv6.conf.default.addr_gen_mode"},
	} {
		fmt.Fprintf(&b, "$ %s\n%s", strings.Join(args, " "), n.mustIn(args...))
	}
	return b.String()
}

// connect is the shortest of count TCP connects from the client to the
// application (curl's time_connect: one round trip), IPv4 or IPv6.
func (n *kubeNet) connect(dst string, count int) time.Duration {
	n.t.Helper()
	best := time.Hour
	for range count {
		r := testenv.Run(30*time.Second, "ip", "netns", "exec", n.client, "curl", "-sS", "-g", "-o", "/dev/null", "-m", "10",
			"-w", "%{http_code} %{time_connect}", fmt.Sprintf("http://%s:%d/", dst, kubeAppPort))
		f := strings.Fields(r.Stdout)
		if r.Code != 0 || len(f) != 2 || f[0] != "200" {
			n.t.Fatalf("curl %s from the client: %s", dst, r)
		}
		sec, _ := strconv.ParseFloat(f[1], 64)
		best = min(best, time.Duration(sec*float64(time.Second)))
	}
	return best
}

var connectMS = func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + " ms" }

// wantDelay checks that connects over IPv4 and IPv6 take the profile's
// delay both ways (a lower bound: load only adds to it).
func (n *kubeNet) wantDelay(when string) {
	n.t.Helper()
	want := 2*kubeDelay - 5*time.Millisecond
	for _, dst := range []string{kubePod4, "[" + kubePod6 + "]"} {
		if got := n.connect(dst, 5); got < want {
			n.t.Errorf("%s: connect to the application at %s: %s, want at least %s", when, dst, connectMS(got), connectMS(want))
		} else {
			n.t.Logf("%s: connect to %s: %s", when, dst, connectMS(got))
		}
	}
}

// wantNoDelay checks that the shortest of five connects over IPv4 and
// IPv6 is well under the profile's delay.
func (n *kubeNet) wantNoDelay(when string) {
	n.t.Helper()
	for _, dst := range []string{kubePod4, "[" + kubePod6 + "]"} {
		if got := n.connect(dst, 5); got >= kubeDelay {
			n.t.Errorf("%s: connect to %s: %s, want less than %s (no fault)", when, dst, connectMS(got), connectMS(kubeDelay))
		} else {
			n.t.Logf("%s: connect to %s: %s", when, dst, connectMS(got))
		}
	}
}

// netnsIno is the inode of the pod's network namespace.
func (n *kubeNet) netnsIno() uint64 {
	var st unix.Stat_t
	if err := unix.Stat(n.pod, &st); err != nil {
		n.t.Fatal(err)
	}
	return st.Ino
}

// played is a manifest podman kube play made pods of.
type played struct {
	t       *testing.T
	file    string   // the rendered manifest
	pod     string   // podman's pod
	infra   string   // its infra container
	volumes []string // podman volumes the manifest makes, which kube down leaves
}

// down is kube down and the removal of what podman 4.3 leaves (the
// volumes of ConfigMaps), idempotent, also after a failure.
func (p *played) down() {
	if r := podman(2*time.Minute, "kube", "down", p.file); r.Code != 0 && !strings.Contains(r.Stderr, "no such pod") {
		p.t.Logf("podman kube down: %s", r)
	}
	podman(time.Minute, "pod", "rm", "--force", "--ignore", p.pod)
	for _, v := range p.volumes {
		podman(time.Minute, "volume", "rm", "--force", v)
	}
}

// leftovers lists what of the test's pod podman still has.
func (p *played) leftovers(uniq string) []string {
	var left []string
	if r := podman(30*time.Second, "pod", "exists", p.pod); r.Code == 0 {
		left = append(left, "pod "+p.pod)
	}
	if out := mustPodman(p.t, 30*time.Second, "ps", "--all", "--format", "{{.Names}}", "--filter", "name="+uniq); out != "" {
		left = append(left, "containers "+out)
	}
	if r := podman(30*time.Second, "container", "exists", p.infra); r.Code == 0 {
		left = append(left, "the infra container "+p.infra)
	}
	if out := mustPodman(p.t, 30*time.Second, "volume", "ls", "--format", "{{.Name}}", "--filter", "name="+uniq); out != "" {
		left = append(left, "volumes "+out)
	}
	if out := mustPodman(p.t, 30*time.Second, "secret", "ls", "--format", "{{.Name}}"); strings.Contains(out, uniq) {
		left = append(left, "secrets "+out)
	}
	return left
}

// downLeavesNothing runs kube down and checks that neither podman nor the
// kernel keeps anything of the pod: no pod, container, volume or secret,
// no process in its network namespace, the node's veth to it gone.
func (p *played) downLeavesNothing(n *kubeNet, uniq string, podNetnsIno uint64) {
	t := p.t
	t.Helper()
	p.down()
	if left := p.leftovers(uniq); len(left) > 0 {
		t.Errorf("left behind after kube down: %v", left)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		users := netnsUsers(podNetnsIno)
		if len(users) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("processes still in the pod's network namespace 10 s after kube down: %v", users)
			break
		}
	}
	if links := testenv.Run(10*time.Second, "ip", "-n", n.node, "-br", "link"); strings.Contains(links.Stdout, "pod@") {
		t.Errorf("the node's veth to the pod is still there after kube down:\n%s", links.Stdout)
	}
}

// renderManifest decodes a manifest under deploy/kubernetes, lets edit
// change each document (nil: leave it out) and writes the result to dir.
func renderManifest(t *testing.T, name, dir string, edit func(doc map[string]any) map[string]any) string {
	t.Helper()
	data, err := os.ReadFile("../deploy/kubernetes/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			break
		}
		if doc == nil {
			continue
		}
		if doc = edit(doc); doc != nil {
			if err := enc.Encode(doc); err != nil {
				t.Fatal(err)
			}
		}
	}
	enc.Close()
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// dig follows keys through nested maps, failing the test if one is missing.
func dig(t *testing.T, m map[string]any, keys ...string) map[string]any {
	t.Helper()
	for _, k := range keys {
		next, ok := m[k].(map[string]any)
		if !ok {
			t.Fatalf("manifest: no %s in %v", k, keys)
		}
		m = next
	}
	return m
}

// list is a manifest's list, or nil.
func list(m map[string]any, key string) []any {
	l, _ := m[key].([]any)
	return l
}

// kubeProfile is the test's profile: kubeDelay each way.
var kubeProfile = fmt.Sprintf("name: kube-e2e\ndescription: %s each way\nbehaviors:\n  - type: delay\n    delay: %s\n", kubeDelay, kubeDelay)

// renameConfigMap gives a ConfigMap a name unique to the test (podman
// makes a volume of that name) and its keys the test's profile.
func renameConfigMap(doc map[string]any, uniq string, renamed map[string]string) string {
	meta := doc["metadata"].(map[string]any)
	old := meta["name"].(string)
	meta["name"] = uniq + "-" + old
	delete(meta, "namespace") // podman has none
	renamed[old] = meta["name"].(string)
	data := doc["data"].(map[string]any)
	for k := range data {
		delete(data, k)
	}
	data["kube-e2e.yaml"] = kubeProfile
	return meta["name"].(string)
}

// sidecar is the played sidecar manifest.
type sidecar struct {
	played
	faultbox string // the faultbox container's name
	token    string
	sysctls  map[string]string // the pod's, from the manifest
}

// renderSidecar turns deploy/kubernetes/sidecar.yaml into what this machine
// runs: the test's image for both containers (the application is faultbox
// serve), the client's network for --to, the test's profile, names unique
// to the test, the TUN device and the token from files of the test (a
// node's /dev/net/tun is mode 0666, this machine's 0600; podman 4.3 mounts
// Secrets wrongly), no container ports (podman would publish them).
func renderSidecar(t *testing.T, image, uniq, dir string) *sidecar {
	t.Helper()
	s := &sidecar{played: played{t: t, pod: uniq + "-pod-0"}, token: uniq + "-token", sysctls: map[string]string{}}
	s.faultbox = s.pod + "-faultbox"
	tun := filepath.Join(dir, "tun")
	if err := unix.Mknod(tun, unix.S_IFCHR|0o666, int(unix.Mkdev(10, 200))); err != nil {
		t.Fatalf("mknod %s: %v", tun, err)
	}
	os.Chmod(tun, 0o666) // past the umask
	tokenDir := filepath.Join(dir, "token")
	if err := os.Mkdir(tokenDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tokenDir, "token"), []byte(s.token+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cms := map[string]string{}
	found := 0
	s.file = renderManifest(t, "sidecar.yaml", dir, func(doc map[string]any) map[string]any {
		switch doc["kind"] {
		case "ConfigMap":
			s.volumes = append(s.volumes, renameConfigMap(doc, uniq, cms))
		case "Deployment":
			doc["metadata"].(map[string]any)["name"] = uniq
			spec := dig(t, doc, "spec", "template", "spec")
			for _, sc := range list(dig(t, spec, "securityContext"), "sysctls") {
				kv := sc.(map[string]any)
				s.sysctls[kv["name"].(string)] = kv["value"].(string)
			}
			renames := map[string]string{}
			for _, v := range list(spec, "volumes") {
				vol := v.(map[string]any)
				name := vol["name"].(string)
				switch {
				case vol["configMap"] != nil:
					cm := vol["configMap"].(map[string]any)
					cm["name"] = cms[cm["name"].(string)]
				case vol["secret"] != nil:
					delete(vol, "secret")
					vol["hostPath"] = map[string]any{"path": tokenDir, "type": "Directory"}
				case vol["emptyDir"] != nil:
					renames[name] = uniq + "-" + name // podman makes it a volume of that name
					vol["name"] = renames[name]
					s.volumes = append(s.volumes, renames[name])
				case vol["hostPath"] != nil && dig(t, vol, "hostPath")["path"] == "/dev/net/tun":
					vol["hostPath"].(map[string]any)["path"] = tun
				}
			}
			for _, c := range list(spec, "containers") {
				ctr := c.(map[string]any)
				delete(ctr, "ports")
				for _, m := range list(ctr, "volumeMounts") {
					if n, ok := renames[m.(map[string]any)["name"].(string)]; ok {
						m.(map[string]any)["name"] = n
					}
				}
				switch ctr["name"] {
				case "app":
					ctr["image"] = image
					ctr["args"] = []string{"serve", "--listen", fmt.Sprintf("[::]:%d", kubeAppPort), "--keepalive-timeout", "0"}
					found++
				case "faultbox":
					ctr["image"] = image
					args := list(ctr, "args")
					for i, a := range args {
						switch as := a.(string); {
						case strings.HasPrefix(as, "--to="):
							args[i] = "--to=" + kubeTo
							found++
						case strings.HasPrefix(as, "--profile=/etc/faultbox/"):
							args[i] = "--profile=/etc/faultbox/kube-e2e.yaml"
							found++
						}
					}
					found++
				}
			}
		}
		return doc
	})
	if found != 4 || len(cms) == 0 || len(s.sysctls) == 0 {
		t.Fatalf("sidecar.yaml: want a ConfigMap, and a Deployment with pod sysctls and containers app and faultbox, the latter with --to= and --profile=/etc/faultbox/...")
	}
	return s
}

// api calls the faultbox container's API from inside the pod (loopback, as
// kubectl port-forward connects), with the token unless noToken.
func (s *sidecar) api(n *kubeNet, path string, noToken bool) (code int, body string) {
	args := []string{"curl", "-sS", "-m", "5", "-o", "-", "-w", "\n%{http_code}"}
	if !noToken {
		args = append(args, "-H", "Authorization: Bearer "+s.token)
	}
	r := n.in(10*time.Second, append(args, fmt.Sprintf("http://127.0.0.1:%d%s", kubeAPIPort, path))...)
	i := strings.LastIndexByte(r.Stdout, '\n')
	if r.Code != 0 || i < 0 {
		return 0, r.String()
	}
	code, _ = strconv.Atoi(strings.TrimSpace(r.Stdout[i+1:]))
	return code, r.Stdout[:i]
}

// waitAttached waits until the faultbox container's API answers, which it
// does once the device is in place.
func (s *sidecar) waitAttached(n *kubeNet, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := s.api(n, "/v1/status", false)
		if code == 200 {
			return
		}
		if time.Now().After(deadline) {
			logs := podman(30*time.Second, "logs", s.faultbox)
			s.t.Fatalf("faultbox's API did not answer within %s (last: %d %s)\nfaultbox container's log:\n%s%s", timeout, code, body, logs.Stdout, logs.Stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// containerPID is the pid of a container's main process.
func containerPID(t *testing.T, name string) int {
	pid, err := strconv.Atoi(mustPodman(t, 30*time.Second, "inspect", "-f", "{{.State.Pid}}", name))
	if err != nil || pid <= 0 {
		t.Fatalf("container %s: no pid (%v)", name, err)
	}
	return pid
}

// checkSidecar plays the sidecar: created stopped, its infra container
// started, its namespace wired and given the pod's sysctls (what a kubelet,
// its CNI plugin and runtime do), then its containers started.
func checkSidecar(t *testing.T, image, uniq string) {
	s := renderSidecar(t, image, uniq, t.TempDir())
	t.Cleanup(s.down)
	mustPodman(t, 2*time.Minute, "kube", "play", "--network", "none", "--start=false", s.file)
	s.infra = mustPodman(t, 30*time.Second, "pod", "inspect", "-f", "{{.InfraContainerID}}", s.pod)
	mustPodman(t, time.Minute, "start", s.infra)
	infraPID := containerPID(t, s.infra)
	n := newKubeNet(t, strconv.Itoa(infraPID), fmt.Sprintf("/proc/%d/ns/net", infraPID))
	for _, k := range slices.Sorted(maps.Keys(s.sysctls)) {
		n.mustIn("sysctl", "-qw", k+"="+s.sysctls[k])
	}
	before := n.snapshot()
	mustPodman(t, 2*time.Minute, "pod", "start", s.pod)
	s.waitAttached(n, time.Minute)

	// The faultbox container: uid 65532, NET_ADMIN and nothing else.
	if uid, eff, err := procCaps(containerPID(t, s.faultbox)); err != nil || uid != 65532 || eff != 1<<unix.CAP_NET_ADMIN {
		t.Errorf("faultbox's process: uid %d, CapEff %#x (%v); want uid 65532 and NET_ADMIN (%#x) only", uid, eff, err, 1<<unix.CAP_NET_ADMIN)
	}
	// The API wants the Secret's token; /metrics is behind it too.
	if code, body := s.api(n, "/v1/status", true); code != 401 {
		t.Errorf("the API without the token: %d %s; want 401", code, body)
	}
	if code, body := s.api(n, "/metrics", false); code != 200 || !strings.Contains(body, "faultbox_") {
		t.Errorf("/metrics with the token: %d, %d bytes; want 200 and faultbox's metrics", code, len(body))
	}

	n.wantDelay("the sidecar in place")
	if _, status := s.api(n, "/v1/status", false); !regexp.MustCompile(`"delayed":\s*[1-9]`).MatchString(status) {
		t.Errorf("the device's status counts no delayed packet:\n%s", status)
	}

	// Killed, the faultbox container takes its interfaces along: the
	// application is reachable at once, without the delay.
	mustPodman(t, time.Minute, "kill", "--signal", "KILL", s.faultbox)
	for deadline := time.Now().Add(10 * time.Second); strings.Contains(n.mustIn("ip", "-br", "link"), "fbx-"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the device's interfaces are still there 10 s after the kill:\n%s", n.mustIn("ip", "-br", "link"))
		}
	}
	n.wantNoDelay("faultbox container killed")

	// Restarted (as the kubelet would), it finds the dead device's state
	// on the pod's volume, undoes it and attaches again.
	mustPodman(t, time.Minute, "start", s.faultbox)
	s.waitAttached(n, time.Minute)
	n.wantDelay("faultbox container restarted")

	// SIGTERM (the pod is deleted, a rollout): faultbox detaches and the
	// namespace is as before, byte for byte.
	mustPodman(t, time.Minute, "stop", "--time", "30", s.faultbox)
	if code := mustPodman(t, 30*time.Second, "inspect", "-f", "{{.State.ExitCode}}", s.faultbox); code != "0" {
		logs := podman(30*time.Second, "logs", s.faultbox)
		t.Errorf("faultbox exited %s on SIGTERM; its log:\n%s%s", code, logs.Stdout, logs.Stderr)
	}
	if after := n.snapshot(); after != before {
		t.Errorf("the pod's namespace after faultbox stopped differs from before it started:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	n.wantNoDelay("faultbox stopped")

	s.downLeavesNothing(n, uniq, n.netnsIno())
}

// checkPerNode runs the DaemonSet's container as its manifest says,
// privileged with the host's PIDs, with podman run (podman 4.3's kube play
// takes no DaemonSet, and ignores hostPID in a Pod), next to a "pod" the
// test made (a namespace with faultbox serve in it, as a container runtime
// makes one), then attaches to that by its PID through the faultbox
// container, as `kubectl exec` would, and stops the faultbox container.
func checkPerNode(t *testing.T, image, uniq string) {
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run") // the node's /run/faultbox, the test's own
	profDir := filepath.Join(dir, "profiles")
	for _, d := range []string{runDir, profDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(profDir, "kube-e2e.yaml"), []byte(kubeProfile), 0o644); err != nil {
		t.Fatal(err)
	}
	name := uniq + "-node"
	run := []string{"run", "--detach", "--name", name, "--network", "none"}
	var args []string
	renderManifest(t, "daemonset.yaml", dir, func(doc map[string]any) map[string]any {
		if doc["kind"] != "DaemonSet" {
			return nil
		}
		spec := dig(t, doc, "spec", "template", "spec")
		if spec["hostPID"] != true {
			t.Fatal("daemonset.yaml: the pod does not have hostPID")
		}
		run = append(run, "--pid", "host")
		vols := map[string]map[string]any{}
		for _, v := range list(spec, "volumes") {
			vols[v.(map[string]any)["name"].(string)] = v.(map[string]any)
		}
		ctrs := list(spec, "containers")
		if len(ctrs) != 1 {
			t.Fatalf("daemonset.yaml: %d containers, want 1", len(ctrs))
		}
		ctr := ctrs[0].(map[string]any)
		sc := dig(t, ctr, "securityContext")
		if sc["privileged"] == true {
			run = append(run, "--privileged")
		}
		if u, ok := sc["runAsUser"].(int); ok {
			run = append(run, "--user", strconv.Itoa(u))
		}
		for _, m := range list(ctr, "volumeMounts") {
			mount := m.(map[string]any)
			vol := vols[mount["name"].(string)]
			var src string
			switch {
			case vol["hostPath"] != nil && dig(t, vol, "hostPath")["path"] == "/run/faultbox":
				src = runDir
			case vol["configMap"] != nil:
				src = profDir // the test's profile in place of the ConfigMap's
			default:
				t.Fatalf("daemonset.yaml: volume %v: the test knows no stand-in for it", vol)
			}
			run = append(run, "--volume", src+":"+mount["mountPath"].(string))
		}
		for _, a := range list(ctr, "args") {
			args = append(args, a.(string))
		}
		return doc
	})
	if len(args) == 0 {
		t.Fatal("daemonset.yaml: no DaemonSet with a container with args")
	}

	// The pod under test: a namespace of the test's with the application.
	target := testenv.NewNetns(t, "kubetgt")
	app := exec.Command("ip", "netns", "exec", target, faultbox, "serve", "--listen", fmt.Sprintf("[::]:%d", kubeAppPort), "--keepalive-timeout", "0", "--log", "/dev/null")
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Process.Kill(); app.Wait() })
	n := newKubeNet(t, target, "/run/netns/"+target)
	before := n.snapshot()

	t.Cleanup(func() { podman(time.Minute, "rm", "--force", "--ignore", name) })
	mustPodman(t, 2*time.Minute, append(append(run, image), args...)...)
	for deadline := time.Now().Add(time.Minute); !strings.Contains(podman(30*time.Second, "logs", name).Stdout, "waiting for"); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			r := podman(30*time.Second, "logs", name)
			t.Fatalf("the faultbox container did not start waiting within a minute; its log:\n%s%s", r.Stdout, r.Stderr)
		}
	}
	n.wantNoDelay("before attach")

	pid := strconv.Itoa(app.Process.Pid)
	mustPodman(t, time.Minute, "exec", name, "faultbox", "attach", "--pid", pid, "--to", kubeTo, "--profile", "/etc/faultbox/profiles/kube-e2e.yaml")
	n.wantDelay("attached through the faultbox container")
	if out := mustPodman(t, time.Minute, "exec", name, "faultbox", "status", "--name", "pid-"+pid); !strings.Contains(out, "kube-e2e") {
		t.Errorf("faultbox status in the faultbox container:\n%s", out)
	}

	// The faultbox container stopped (SIGTERM): it detaches what was
	// attached through it, and the pod under test is as before, byte for
	// byte.
	mustPodman(t, time.Minute, "stop", "--time", "30", name)
	if code := mustPodman(t, 30*time.Second, "inspect", "-f", "{{.State.ExitCode}}", name); code != "0" {
		logs := podman(30*time.Second, "logs", name)
		t.Errorf("the faultbox container exited %s on SIGTERM; its log:\n%s%s", code, logs.Stdout, logs.Stderr)
	}
	if after := n.snapshot(); after != before {
		t.Errorf("the target's namespace after the faultbox container stopped differs from before:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	n.wantNoDelay("the faultbox container stopped")
	if ents, _ := os.ReadDir(runDir); len(ents) > 1 || (len(ents) == 1 && ents[0].Name() != ".lock") {
		t.Errorf("the node's /run/faultbox still holds %v", ents)
	}
	mustPodman(t, time.Minute, "rm", name)
	if r := podman(30*time.Second, "container", "exists", name); r.Code == 0 {
		t.Errorf("container %s left behind", name)
	}
}

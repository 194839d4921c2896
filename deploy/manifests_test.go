package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// manifest is one document of a file under kubernetes/.
type manifest struct {
	file string
	obj  runtime.Object     // a typed object (apiVersion and kind given) ...
	ctr  *corev1.Container  // ... or a partial container for kubectl debug --custom
	gvk  string             // "apps/v1, Kind=Deployment"
	meta *metav1.ObjectMeta // nil for a partial container
	pods []*corev1.PodSpec  // the pod specs it holds (a workload's template)
	tmpl []*metav1.ObjectMeta
}

// strictDecoder decodes the API groups the manifests use; unknown and
// duplicate fields are errors, as kubectl apply --validate=strict makes
// them.
func strictDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// decodeFile splits a YAML file into documents and decodes each strictly:
// a document with a kind into its API type, one without into a container.
func decodeFile(dec runtime.Decoder, file string, data []byte) ([]manifest, error) {
	var out []manifest
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		var raw map[string]any
		if err := yaml.Unmarshal(doc, &raw); err != nil {
			return nil, fmt.Errorf("%s, document %d: %v", file, i, err)
		}
		if len(raw) == 0 { // comments only
			continue
		}
		m := manifest{file: file}
		if _, ok := raw["kind"]; !ok {
			m.ctr = &corev1.Container{}
			if err := yaml.UnmarshalStrict(doc, m.ctr); err != nil {
				return nil, fmt.Errorf("%s, document %d (a partial container): %v", file, i, err)
			}
			out = append(out, m)
			continue
		}
		obj, gvk, err := dec.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s, document %d: %v", file, i, err)
		}
		m.obj, m.gvk = obj, gvk.String()
		switch o := obj.(type) {
		case *appsv1.Deployment:
			m.meta, m.pods, m.tmpl = &o.ObjectMeta, []*corev1.PodSpec{&o.Spec.Template.Spec}, []*metav1.ObjectMeta{&o.Spec.Template.ObjectMeta}
		case *appsv1.DaemonSet:
			m.meta, m.pods, m.tmpl = &o.ObjectMeta, []*corev1.PodSpec{&o.Spec.Template.Spec}, []*metav1.ObjectMeta{&o.Spec.Template.ObjectMeta}
		case *corev1.Pod:
			m.meta, m.pods, m.tmpl = &o.ObjectMeta, []*corev1.PodSpec{&o.Spec}, []*metav1.ObjectMeta{&o.ObjectMeta}
		case *corev1.ConfigMap:
			m.meta = &o.ObjectMeta
		case *corev1.Secret:
			m.meta = &o.ObjectMeta
		case *corev1.Namespace:
			m.meta = &o.ObjectMeta
		default:
			return nil, fmt.Errorf("%s, document %d: %s is not a kind these manifests should hold", file, i, gvk)
		}
		out = append(out, m)
	}
	return out, nil
}

// loadManifests decodes every YAML file under kubernetes/.
func loadManifests(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.y*ml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests under kubernetes/ (%v)", err)
	}
	dec := strictDecoder(t)
	var all []manifest
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := decodeFile(dec, f, data)
		if err != nil {
			t.Error(err)
			continue
		}
		if len(ms) == 0 {
			t.Errorf("%s: no document", f)
		}
		all = append(all, ms...)
	}
	return all
}

func TestManifests_DecodeStrictly(t *testing.T) {
	ms := loadManifests(t)
	kinds := map[string]int{}
	for _, m := range ms {
		if m.ctr != nil {
			kinds["partial container"]++
		} else {
			kinds[m.gvk]++
		}
	}
	t.Logf("decoded strictly: %v", kinds)
	for _, want := range []string{"apps/v1, Kind=Deployment", "apps/v1, Kind=DaemonSet", "/v1, Kind=ConfigMap", "partial container"} {
		if kinds[want] == 0 {
			t.Errorf("no %s among the manifests", want)
		}
	}
}

// The decoder must refuse what the test exists to catch, or the test
// could not fail.
func TestManifests_DecoderRefusesTyposAndDuplicates(t *testing.T) {
	dec := strictDecoder(t)
	for name, doc := range map[string]string{
		"unknown field": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndatta: {a: b}\n",
		"nested typo":   "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: c, image: i, imagePullPolicyy: Never}]\n",
		"duplicate":     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n",
		"unknown kind":  "apiVersion: v1\nkind: ConfigMapp\nmetadata: {name: x}\n",
		"container":     "securityContext: {runAsUsr: 0}\n",
	} {
		if _, err := decodeFile(dec, name, []byte(doc)); err == nil {
			t.Errorf("%s: decoded without an error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// Every pod spec refers only to what exists: mounts to volumes of the
// pod, ConfigMap volumes to ConfigMaps of the same file (unless optional),
// selectors to the template's labels; names are unique where Kubernetes
// requires it.
func TestManifests_References(t *testing.T) {
	ms := loadManifests(t)
	for _, m := range ms {
		if m.meta == nil || len(m.pods) == 0 {
			continue
		}
		where := m.file + ": " + m.gvk + " " + m.meta.Name
		switch o := m.obj.(type) {
		case *appsv1.Deployment:
			checkSelector(t, where, o.Spec.Selector, o.Spec.Template.Labels)
		case *appsv1.DaemonSet:
			checkSelector(t, where, o.Spec.Selector, o.Spec.Template.Labels)
		}
		for _, pod := range m.pods {
			checkPod(t, where, pod, configMapsOf(ms, m.file))
		}
	}
}

func checkSelector(t *testing.T, where string, sel *metav1.LabelSelector, lbls map[string]string) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() || !s.Matches(labels.Set(lbls)) {
		t.Errorf("%s: selector %v does not select the template's labels %v (%v)", where, sel, lbls, err)
	}
}

func checkPod(t *testing.T, where string, pod *corev1.PodSpec, cms map[string]*corev1.ConfigMap) {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		if _, dup := vols[v.Name]; dup {
			t.Errorf("%s: volume %q twice", where, v.Name)
		}
		vols[v.Name] = v
		if cmv := v.ConfigMap; cmv != nil && (cmv.Optional == nil || !*cmv.Optional) && cms[cmv.Name] == nil {
			t.Errorf("%s: volume %q: no ConfigMap %q in the file", where, v.Name, cmv.Name)
		}
	}
	used := map[string]bool{}
	names := map[string]bool{}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		if names[c.Name] {
			t.Errorf("%s: container %q twice", where, c.Name)
		}
		names[c.Name] = true
		if c.Image == "" {
			t.Errorf("%s: container %q has no image", where, c.Name)
		}
		for _, p := range c.Ports {
			if len(p.Name) > 15 {
				t.Errorf("%s: container %q: port name %q is longer than 15 characters", where, c.Name, p.Name)
			}
		}
		for _, vm := range c.VolumeMounts {
			used[vm.Name] = true
			if _, ok := vols[vm.Name]; !ok {
				t.Errorf("%s: container %q mounts %q, which is not a volume of the pod", where, c.Name, vm.Name)
			}
		}
	}
	for name := range vols {
		if !used[name] {
			t.Errorf("%s: volume %q is mounted by no container", where, name)
		}
	}
}

func configMapsOf(ms []manifest, file string) map[string]*corev1.ConfigMap {
	out := map[string]*corev1.ConfigMap{}
	for _, m := range ms {
		if cm, ok := m.obj.(*corev1.ConfigMap); ok && m.file == file {
			out[cm.Name] = cm
		}
	}
	return out
}

// A faultbox container's --profile is a built-in profile, or a file
// mounted from a ConfigMap of the same file whose text faultbox accepts;
// its other file arguments lie under one of its mounts.
func TestManifests_FaultboxProfilesAndFiles(t *testing.T) {
	ms := loadManifests(t)
	checked := 0
	for _, m := range ms {
		for _, pod := range m.pods {
			for _, c := range pod.Containers {
				if !strings.Contains(c.Image, "faultbox") {
					continue
				}
				where := m.file + ": container " + c.Name
				args := append(slices.Clone(c.Command), c.Args...)
				for flag, val := range fileFlags(args) {
					if flag != "--profile" && !path.IsAbs(val) {
						continue
					}
					if flag == "--profile" && !path.IsAbs(val) {
						if out, err := faultboxRun(t, "profile", "show", val); err != nil {
							t.Errorf("%s: --profile %s: %v: %s", where, val, err, out)
						}
						checked++
						continue
					}
					vol, key, ok := mountedAt(c, pod, val)
					if !ok {
						t.Errorf("%s: %s=%s lies under none of the container's mounts", where, flag, val)
						continue
					}
					if flag != "--profile" {
						continue
					}
					if vol.ConfigMap == nil {
						t.Errorf("%s: --profile %s: volume %q is not a ConfigMap", where, val, vol.Name)
						continue
					}
					cm := configMapsOf(ms, m.file)[vol.ConfigMap.Name]
					text, ok := cm.Data[key]
					if !ok {
						t.Errorf("%s: --profile %s: ConfigMap %q has no key %q", where, val, cm.Name, key)
						continue
					}
					if err := validateProfile(t, cm.Name, key, text); err != nil {
						t.Errorf("%s: the profile in ConfigMap %q: %v", where, cm.Name, err)
					}
					checked++
				}
			}
		}
	}
	if checked == 0 {
		t.Error("no faultbox container with a --profile among the manifests")
	}
}

// fileFlags returns the --flag=value and --flag value pairs of args whose
// flag takes a profile or a file.
func fileFlags(args []string) map[string]string {
	out := map[string]string{}
	for i, a := range args {
		flag, val, eq := strings.Cut(a, "=")
		if !strings.HasPrefix(flag, "--") || !(flag == "--profile" || strings.HasSuffix(flag, "-file") || flag == "--capture") {
			continue
		}
		if !eq && i+1 < len(args) {
			val = args[i+1]
		}
		out[flag] = val
	}
	return out
}

// mountedAt finds the volume mounted at file's directory (or above it)
// and the file's name relative to the mount.
func mountedAt(c corev1.Container, pod *corev1.PodSpec, file string) (corev1.Volume, string, bool) {
	for _, vm := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == vm.Name {
				return v, rel, true
			}
		}
	}
	return corev1.Volume{}, "", false
}

// The partial container for kubectl debug --custom mounts only volumes
// that a pod prepared as sidecar.yaml has.
func TestManifests_DebugContainerFitsThePreparedPod(t *testing.T) {
	ms := loadManifests(t)
	var sidecar *corev1.PodSpec
	for _, m := range ms {
		if d, ok := m.obj.(*appsv1.Deployment); ok && filepath.Base(m.file) == "sidecar.yaml" {
			sidecar = &d.Spec.Template.Spec
		}
	}
	if sidecar == nil {
		t.Fatal("no Deployment in kubernetes/sidecar.yaml")
	}
	found := false
	for _, m := range ms {
		if m.ctr == nil {
			continue
		}
		found = true
		for _, vm := range m.ctr.VolumeMounts {
			if !slices.ContainsFunc(sidecar.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name }) {
				t.Errorf("%s mounts %q, which sidecar.yaml's pod does not have", m.file, vm.Name)
			}
		}
	}
	if !found {
		t.Error("no partial container (kubectl debug --custom) among the manifests")
	}
}

// Every profile in a ConfigMap of faultbox's (labelled
// app.kubernetes.io/name: faultbox), one key a file, is one faultbox
// accepts, whether or not a container names it.
func TestManifests_ProfileConfigMapsParse(t *testing.T) {
	n := 0
	for _, m := range loadManifests(t) {
		cm, ok := m.obj.(*corev1.ConfigMap)
		if !ok || cm.Labels["app.kubernetes.io/name"] != "faultbox" {
			continue
		}
		for key, text := range cm.Data {
			if !strings.HasSuffix(key, ".yaml") {
				t.Errorf("%s: ConfigMap %s: key %q is not a profile file name (NAME.yaml)", m.file, cm.Name, key)
				continue
			}
			if err := validateProfile(t, cm.Name, key, text); err != nil {
				t.Errorf("%s: %v", m.file, err)
			}
			n++
		}
	}
	if n < 2 {
		t.Errorf("%d profiles in faultbox's ConfigMaps; want the sidecar's and the DaemonSet's", n)
	}
}

// A faultbox container's arguments are a command line faultbox takes: its
// own parser reads them (with --help added, so that nothing runs).
func TestManifests_FaultboxArgsParse(t *testing.T) {
	n := 0
	for _, m := range loadManifests(t) {
		for _, pod := range m.pods {
			for _, c := range pod.Containers {
				if !strings.Contains(c.Image, "faultbox") {
					continue
				}
				args := append(slices.Clone(c.Command), c.Args...)
				if len(args) > 0 && path.Base(args[0]) == "faultbox" {
					args = args[1:]
				}
				if out, err := faultboxRun(t, append(args, "--help")...); err != nil {
					t.Errorf("%s: container %s: faultbox %s: %v\n%s", m.file, c.Name, strings.Join(args, " "), err, out)
				}
				n++
			}
		}
	}
	if n < 2 {
		t.Errorf("%d faultbox containers; want the sidecar's and the DaemonSet's", n)
	}
}

// validateProfile checks a ConfigMap's profile with faultbox's own loader
// (faultbox profile validate), which names the line of an error.
func validateProfile(t *testing.T, configMap, key, text string) error {
	t.Helper()
	file := filepath.Join(t.TempDir(), key)
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := faultboxRun(t, "profile", "validate", file); err != nil {
		return fmt.Errorf("ConfigMap %s, key %s: %v: %s", configMap, key, err, strings.TrimSpace(out))
	}
	return nil
}

// faultbox is the binary the tests run, built by TestMain from the parent
// module: deploy/ does not import faultbox's packages, so that faultbox's
// go.mod and this one never have to move together.
var faultbox string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fbx-deploy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	faultbox = filepath.Join(dir, "faultbox")
	build := exec.Command("go", "build", "-o", faultbox, "./cmd/faultbox")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building faultbox: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// faultboxRun runs faultbox with args and returns what it printed.
func faultboxRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, faultbox, args...).CombinedOutput()
	return string(out), err
}

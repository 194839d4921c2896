package report

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// chromium returns Debian's chromium, skipping the test without it (failing
// when CI=true: CI must render the report).
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("test needs chromium (apt-get install chromium), which CI must provide")
	}
	t.Skip("test needs chromium")
	return ""
}

// runChromium runs one headless chromium with its own profile directory,
// bounded in time; on timeout its whole process group is killed.
func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
		"--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.Bytes())
	}
	return stdout.Bytes()
}

func TestReport_RendersInChromium(t *testing.T) {
	bin := chromium(t)
	dir, _ := writeASAReport(t)
	page, err := filepath.Abs(filepath.Join(dir, HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	url := "file://" + page

	// The DOM as the browser built it.
	doc := parseHTML(t, string(runChromium(t, bin, "--dump-dom", url)))
	if byID(doc, "verdict") == nil {
		t.Error("rendered page has no #verdict")
	}
	ladder := byID(doc, "ladder")
	if ladder == nil || ladder.Data != "svg" {
		t.Fatal("rendered page has no svg#ladder")
	}
	if n := len(find(ladder, elem("g", "pkt"))); n != len(asaFlags) {
		t.Errorf("rendered ladder has %d g.pkt, want %d", n, len(asaFlags))
	}
	inj := find(ladder, func(n *html.Node) bool { return n.Data == "g" && attr(n, "data-injected") == "true" })
	if len(inj) != 1 || attr(inj[0], "data-flags") != "R." {
		t.Errorf("rendered ladder: %d injected arrows", len(inj))
	}
	if s := byID(doc, "sockets"); s == nil || s.Data != "svg" {
		t.Error("rendered page has no svg#sockets")
	}

	// A screenshot: the page must paint, not come out blank.
	shot := filepath.Join(dir, "report.png")
	runChromium(t, bin, "--screenshot="+shot, "--window-size=1400,2000", "--hide-scrollbars", url)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 1400 || b.Dy() != 2000 {
		t.Errorf("screenshot %v, want 1400x2000", b)
	}
	if n := colours(img, 64); n < 16 {
		t.Errorf("screenshot has %d distinct colours: blank or unstyled", n)
	}
	t.Logf("screenshot: %s", shot)
}

// colours counts distinct colours (quantised to 4 bits per channel) in a
// grid of samples, stopping at limit.
func colours(img image.Image, limit int) int {
	seen := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 7 {
		for x := b.Min.X; x < b.Max.X; x += 7 {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 12, g >> 12, bl >> 12}] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}

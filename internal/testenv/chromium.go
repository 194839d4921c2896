package testenv

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// chromiumPaths are where Debian's chromium package puts the browser.
var chromiumPaths = []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"}

// Chromium returns Debian's chromium, skipping the test without it (failing
// when CI=true: CI must render the reports).
func Chromium(t testing.TB) string {
	t.Helper()
	return firstFile(t, chromiumPaths, "chromium (apt-get install chromium)")
}

// firstFile returns the first of paths that exists, or calls Missing(what).
func firstFile(t testing.TB, paths []string, what string) string {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	Missing(t, what)
	return ""
}

// RunChromium runs one headless chromium (no sandbox, as root; nothing
// fetched from the network; its own profile directory) with args, bounded
// in time: on timeout its whole process group is killed. It returns stdout
// and fails the test if chromium fails.
func RunChromium(t testing.TB, bin string, args ...string) []byte {
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

// Screenshot has chromium render url in a width x height window into the
// PNG file shot and returns the decoded image, failing the test if either
// step fails.
func Screenshot(t testing.TB, bin, url, shot string, width, height int) image.Image {
	t.Helper()
	RunChromium(t, bin, "--screenshot="+shot, "--window-size="+strconv.Itoa(width)+","+strconv.Itoa(height),
		"--hide-scrollbars", url)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	return img
}

// Colours counts the distinct colours (quantised to 4 bits per channel) in
// a grid of samples 7 pixels apart, stopping at limit: a page that did not
// paint, or painted without its styles, has few.
func Colours(img image.Image, limit int) int {
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

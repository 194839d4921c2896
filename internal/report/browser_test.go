package report

import (
	"github.com/faultbox/faultbox/internal/testenv"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/net/html"
)

func TestReport_RendersInChromium(t *testing.T) {
	bin := testenv.Chromium(t)
	dir, _ := writeASAReport(t)
	page, err := filepath.Abs(filepath.Join(dir, HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	url := "file://" + page

	// The DOM as the browser built it.
	doc := parseHTML(t, string(testenv.RunChromium(t, bin, "--dump-dom", url)))
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
	testenv.RunChromium(t, bin, "--screenshot="+shot, "--window-size=1400,2000", "--hide-scrollbars", url)
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

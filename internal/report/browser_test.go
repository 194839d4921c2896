package report

import (
	"path/filepath"
	"testing"

	"golang.org/x/net/html"

	"github.com/faultbox/faultbox/internal/testenv"
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
	ladder := svgByID(t, doc, "ladder")
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
	img := testenv.Screenshot(t, bin, url, shot, 1400, 2000)
	if b := img.Bounds(); b.Dx() != 1400 || b.Dy() != 2000 {
		t.Errorf("screenshot %v, want 1400x2000", b)
	}
	if n := testenv.Colours(img, 64); n < 16 {
		t.Errorf("screenshot has %d distinct colours: blank or unstyled", n)
	}
	t.Logf("screenshot: %s", shot)
}

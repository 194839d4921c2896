package report

import (
	"bytes"
	_ "embed"
	"html/template"
	"slices"
	"strings"
	"time"
)

//go:embed report.css
var pageCSS string

// maxEventLines bounds the event log shown on the page; events.log has all.
const maxEventLines = 2000

type sysctl struct{ Name, Value string }

type distView struct {
	ID, Title, Caption string
	SVG                template.HTML
}

const defaultSysctlNote = "These sysctls were set inside the lab's network namespaces only, " +
	"to shorten kernel timeouts so the run finishes in seconds; the host's own settings are untouched."

type pageData struct {
	R          *Report
	V          *verdictJSON
	Ladder     *ladderView
	Sockets    *sockView
	Dists      []distView
	Sysctls    []sysctl
	SysctlNote string
	Events     []string
	EventsOK   bool // all events shown
	CSS        template.CSS
	Now        string
}

var funcs = template.FuncMap{
	"offset": fmtOffset,
	"dur": func(d time.Duration) string {
		if d <= 0 {
			return ""
		}
		return roundDur(d).String()
	},
	"stamp": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Format("2006-01-02 15:04:05 MST")
	},
	"outcomeClass": func(o Outcome) string {
		switch o {
		case Reproduced:
			return "reproduced"
		case NotReproduced:
			return "not-reproduced"
		}
		return "error"
	},
	"runPass": func(r Run) bool { return r.Expected != "" && r.Outcome != Error && r.Outcome == r.Expected },
	"color":   stateColor,
	"svg":     func(s string) template.HTML { return template.HTML(s) },
	"sub":     func(a, b int) int { return a - b },
}

var page = template.Must(template.New("report").Funcs(funcs).Parse(pageTemplate))

func renderHTML(r *Report, v *verdictJSON, lad *ladderView) ([]byte, error) {
	d := pageData{R: r, V: v, Ladder: lad, Sockets: buildSockets(r), CSS: template.CSS(pageCSS),
		Now: time.Now().Format("2006-01-02 15:04:05 MST")}
	for i := range r.Distributions {
		dd := &r.Distributions[i]
		d.Dists = append(d.Dists, distView{ID: dd.ID, Title: dd.Title, Caption: dd.Caption, SVG: template.HTML(drawDistribution(dd))})
	}
	for k, val := range r.Sysctls {
		d.Sysctls = append(d.Sysctls, sysctl{k, val})
	}
	slices.SortFunc(d.Sysctls, func(a, b sysctl) int { return strings.Compare(a.Name, b.Name) })
	d.SysctlNote = r.SysctlNote
	if d.SysctlNote == "" && len(d.Sysctls) > 0 {
		d.SysctlNote = defaultSysctlNote
	}
	d.Events = r.Events
	d.EventsOK = len(d.Events) <= maxEventLines
	if !d.EventsOK {
		d.Events = d.Events[len(d.Events)-maxEventLines:]
	}
	var buf bytes.Buffer
	if err := page.Execute(&buf, &d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

const pageTemplate = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="faultbox">
<title>{{.R.Scenario}} · {{.R.Outcome}} · faultbox</title>
<style>{{.CSS}}</style>
</head>
<body>
<header class="top">
  <div class="brand">faultbox <span>scenario report</span></div>
  <h1>{{.R.Scenario}}</h1>
  {{with .R.Description}}<p class="desc">{{.}}</p>{{end}}
</header>
<main>
<section id="verdict" class="verdict {{outcomeClass .R.Outcome}} {{if .V.Pass}}pass{{else}}fail{{end}}" data-outcome="{{.R.Outcome}}" data-expected="{{.R.Expected}}" data-pass="{{.V.Pass}}">
  <div class="v-main">
    <div class="v-label">Verdict</div>
    <div class="v-outcome">{{.R.Outcome}}</div>
    {{with .R.Reason}}<div class="v-reason">{{.}}</div>{{end}}
  </div>
  <div class="v-side">
    <div class="v-label">Expected</div>
    <div class="v-expected">{{if .R.Expected}}{{.R.Expected}}{{else}}—{{end}}</div>
    <div class="v-pass">{{if .V.Pass}}✓ as expected{{else if eq .R.Outcome "error"}}✗ the run could not decide{{else}}✗ not what the scenario expects{{end}}</div>
  </div>
</section>
{{range .R.Notes}}<p class="note-line">{{.}}</p>{{end}}
{{range .V.Warnings}}<p class="warning">Evidence problem: {{.}}</p>{{end}}

<section id="facts">
  <dl class="facts">
    <div><dt>Seed</dt><dd class="mono">{{.R.Seed}}</dd></div>
    {{with .R.Kernel}}<div><dt>Kernel</dt><dd class="mono">{{.}}</dd></div>{{end}}
    {{with .R.Profile}}<div><dt>Profile</dt><dd class="mono">{{.}}</dd></div>{{end}}
    {{with stamp .R.Start}}<div><dt>Started</dt><dd>{{.}}</dd></div>{{end}}
    {{with dur .R.Duration}}<div><dt>Duration</dt><dd>{{.}}</dd></div>{{end}}
    <div><dt>Evidence</dt><dd>{{with .V.CaptureFile}}<a href="{{.}}">{{.}}</a> · {{end}}<a href="verdict.json">verdict.json</a> · <a href="sockets.json">sockets.json</a> · <a href="events.log">events.log</a></dd></div>
  </dl>
</section>

{{if or .Sysctls .SysctlNote}}
<section id="sysctls">
  <h2>Lab settings</h2>
  {{with .SysctlNote}}<p>{{.}}</p>{{end}}
  {{if .Sysctls}}<table class="kv"><thead><tr><th>sysctl (inside the lab namespaces)</th><th>value</th></tr></thead><tbody>
  {{range .Sysctls}}<tr><td class="mono">{{.Name}}</td><td class="mono">{{.Value}}</td></tr>{{end}}
  </tbody></table>{{end}}
</section>
{{end}}

{{if .R.Runs}}
<section id="ab">
  <h2>A/B runs</h2>
  <table><thead><tr><th>run</th><th>change</th><th>verdict</th><th>expected</th><th>reason</th></tr></thead><tbody>
  {{range .R.Runs}}<tr class="run" data-outcome="{{.Outcome}}">
    <td>{{if .Report}}<a href="{{.Report}}">{{.Name}}</a>{{else}}{{.Name}}{{end}}</td>
    <td>{{.Change}}</td>
    <td><span class="chip {{outcomeClass .Outcome}}">{{.Outcome}}</span></td>
    <td>{{.Expected}}{{if .Expected}} {{if runPass .}}<span class="ok">✓</span>{{else}}<span class="bad">✗</span>{{end}}{{end}}</td>
    <td>{{.Reason}}</td></tr>{{end}}
  </tbody></table>
</section>
{{end}}

<section id="timeline">
  <h2>Timeline</h2>
  {{if .R.Timeline}}<table class="tl"><thead><tr><th class="num">time</th><th>who</th><th>what</th></tr></thead><tbody>
  {{range .R.Timeline}}<tr class="entry actor-{{.Actor}}"><td class="num mono">{{offset .At}}</td><td><span class="actor">{{.Actor}}</span></td><td>{{.Text}}</td></tr>{{end}}
  </tbody></table>{{else}}<p class="empty">No timeline recorded.</p>{{end}}
</section>

{{if .R.Results.Rows}}
<section id="results">
  <h2>Client results</h2>
  <table class="results"><thead><tr>{{range .R.Results.Columns}}<th>{{.}}</th>{{end}}</tr></thead><tbody>
  {{range .R.Results.Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>{{end}}
  </tbody></table>
</section>
{{end}}

{{if .Dists}}
<section id="distributions">
  {{range .Dists}}<h2>{{.Title}}</h2>
  {{with .Caption}}<p class="summary">{{.}}</p>{{end}}
  <div class="chart">{{.SVG}}</div>
  {{end}}
</section>
{{end}}

<section id="ladder-section">
  <h2>Ladder diagram</h2>
  {{with .Ladder}}
  <p class="summary">{{.Shown}} of {{.Selected}} packet{{if ne .Selected 1}}s{{end}} of the selected connections drawn{{if gt .Selected .Shown}}; <b>{{sub .Selected .Shown}} left out</b> (kept first: packets the device acted on, SYN, FIN and RST segments, then their neighbours){{end}}.</p>
  {{end}}
  {{template "ladder" .}}
</section>

<section id="sockets-section">
  <h2>Socket states</h2>
  {{with .Sockets}}
  <p class="summary">{{.Sockets}} socket{{if ne .Sockets 1}}s{{end}}, {{.Samples}} samples (netlink sock_diag){{if .Omitted}}; {{.Omitted}} sockets not drawn as bands, all counted below{{end}}. Hover a band for retransmits, unacknowledged segments and RTT; ticks above a band mark new retransmits, triangles mark timeline events.</p>
  {{if .CountsFirst}}<h3>Sockets per state</h3>
  <div class="chart">{{svg .Counts}}</div>
  <h3>Each socket</h3>
  <div class="chart">{{svg .Bands}}</div>
  {{else}}<div class="chart">{{svg .Bands}}</div>
  <h3>Sockets per state</h3>
  <div class="chart">{{svg .Counts}}</div>{{end}}
  {{else}}<p class="empty">No socket samples recorded.</p>{{end}}
</section>

<section id="events">
  <h2>Device event log</h2>
  {{if .Events}}<details{{if le (len .Events) 40}} open{{end}}><summary>{{len .R.Events}} event{{if ne (len .R.Events) 1}}s{{end}}{{if not .EventsOK}} (the last {{len .Events}} shown; all in events.log){{end}}</summary>
  <pre class="log">{{range .Events}}{{.}}
{{end}}</pre></details>{{else}}<p class="empty">The device logged no events.</p>{{end}}
</section>
</main>
<footer>Generated by faultbox on {{.Now}}. This page is self-contained: it loads nothing from the network.</footer>
</body>
</html>
{{define "ladder"}}{{with .Ladder}}
  {{if .Truncated}}<p class="warning">The capture is larger than the report reads; later packets are not shown.</p>{{end}}
  {{if .SVG}}
  <div class="legend">
    <span><i class="sw up"></i>from the connection's initiator</span>
    <span><i class="sw down"></i>to the initiator</span>
    <span><i class="sw inj"></i>injected by the device ({{.Injected}})</span>
    <span><b class="x">✕</b>dropped by the device ({{.Dropped}})</span>
    <span><i class="sw del"></i>delayed by the device ({{.Delayed}})</span>
    {{if .Modified}}<span><i class="sw mod"></i>modified ({{.Modified}})</span>{{end}}
    {{if .Marked}}<span><i class="sw mark"></i>what the verdict rests on ({{.Marked}})</span>{{end}}
  </div>
  <table class="conns"><thead><tr><th>#</th><th>connection</th><th>packets</th></tr></thead><tbody>
  {{range .Conns}}<tr><td><b style="color:{{.Color}}">#{{.ID}}</b></td><td class="mono">{{.Proto}} {{.From}} → {{.To}}</td><td class="num">{{.Packets}}</td></tr>{{end}}
  </tbody></table>
  <p class="hint">Times in seconds from the start of the run. Sequence and acknowledgement numbers are relative to each side's initial sequence number when the capture holds its SYN; hover an arrow for the absolute values and the device's note.</p>
  <div class="chart ladder">{{.SVG}}</div>
  {{else}}<p class="empty">The capture holds no packets of the selected connections.</p>{{end}}
{{else}}<p class="empty">No capture.</p>{{end}}{{end}}
`

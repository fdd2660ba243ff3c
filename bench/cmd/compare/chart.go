package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"slices"
	"strings"
	"text/template"
	"time"
)

// The chart has two panels side by side, throughput and p99 latency, each
// against concurrency. Both y axes are logarithmic because the scenarios
// span two orders of magnitude (a cached read against an order
// transaction). Server lines are solid and coloured, ceilings dashed grey.

const (
	panelW, panelH        = 420, 300
	marginL, marginT      = 70, 80
	panelGap              = 110
	legendRowH, legendTop = 18, marginT + panelH + 62
)

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"}

type chartLine struct {
	Label  string
	Color  string
	Dash   string
	Points [2]string // polyline points per panel
	Dots   [2][]point
}

type point struct{ X, Y float64 }

type chartTick struct {
	Pos   float64
	Label string
}

type chartPanel struct {
	X, Y   float64 // top-left of the plot area
	Title  string
	YTicks []chartTick
}

type chartData struct {
	Width, Height float64
	W, H          float64
	Title         string
	Subtitle      string
	Panels        [2]chartPanel
	XTicks        []chartTick // relative to a panel's left edge
	Lines         []chartLine
	LegendX       []float64
}

// chartSeries is one line's values by concurrency.
type chartSeries struct {
	label   string
	ceiling bool
	rps     map[int]float64
	p99     map[int]time.Duration
}

// renderChart draws the report as an SVG document.
func renderChart(r *report) ([]byte, error) {
	var conns []int
	var order []string
	lines := map[string]*chartSeries{}
	add := func(label string, ceiling bool, conn int, m measurement) {
		s, ok := lines[label]
		if !ok {
			s = &chartSeries{label: label, ceiling: ceiling, rps: map[int]float64{}, p99: map[int]time.Duration{}}
			lines[label] = s
			order = append(order, label)
		}
		if _, seen := s.rps[conn]; !seen {
			s.rps[conn], s.p99[conn] = m.RPS, m.P99
		}
	}
	for _, c := range r.Cells {
		if !slices.Contains(conns, c.Conns) {
			conns = append(conns, c.Conns)
		}
		add(c.Scenario+" (api-perf)", false, c.Conns, c.Server.Median)
		if c.Ceiling != nil {
			// A ceiling used by several scenarios is drawn once, from
			// the first scenario that measured it.
			add(c.Ceiling.Target+" (ceiling)", true, c.Conns, c.Ceiling.Median)
		}
	}
	slices.Sort(conns)
	if len(conns) == 0 {
		return nil, fmt.Errorf("chart: no measurements")
	}

	var rpsVals, p99Vals []float64
	for _, s := range lines {
		for _, v := range s.rps {
			rpsVals = append(rpsVals, v)
		}
		for _, v := range s.p99 {
			p99Vals = append(p99Vals, float64(v)/float64(time.Millisecond))
		}
	}
	rpsLo, rpsHi := logBounds(rpsVals)
	p99Lo, p99Hi := logBounds(p99Vals)

	d := chartData{W: panelW, H: panelH, Title: "api-perf against its ceilings",
		Subtitle: fmt.Sprintf("%s · %s · medians of %d round(s) of %s", r.Machine["cpu"], r.Loader, r.Rounds, r.Duration)}
	d.Panels[0] = chartPanel{X: marginL, Y: marginT, Title: "throughput (req/s, log scale)", YTicks: logTicks(rpsLo, rpsHi, fmtCount)}
	d.Panels[1] = chartPanel{X: marginL + panelW + panelGap, Y: marginT, Title: "p99 latency (ms, log scale)",
		YTicks: logTicks(p99Lo, p99Hi, fmtMillis)}
	for i := range d.Panels[0].YTicks {
		d.Panels[0].YTicks[i].Pos = yPos(d.Panels[0].YTicks[i].Pos, rpsLo, rpsHi)
	}
	for i := range d.Panels[1].YTicks {
		d.Panels[1].YTicks[i].Pos = yPos(d.Panels[1].YTicks[i].Pos, p99Lo, p99Hi)
	}
	xOf := func(i int) float64 {
		if len(conns) == 1 {
			return panelW / 2
		}
		return 20 + float64(i)*(panelW-40)/float64(len(conns)-1)
	}
	for i, c := range conns {
		d.XTicks = append(d.XTicks, chartTick{Pos: xOf(i), Label: fmt.Sprint(c)})
	}

	// Servers first, then ceilings, so the legend reads in two groups.
	slices.SortStableFunc(order, func(a, b string) int {
		switch {
		case lines[a].ceiling == lines[b].ceiling:
			return 0
		case lines[b].ceiling:
			return -1
		}
		return 1
	})
	colour, grey := 0, 0
	for _, label := range order {
		s := lines[label]
		l := chartLine{Label: label}
		if s.ceiling {
			l.Color = []string{"#444444", "#777777", "#aaaaaa"}[grey%3]
			l.Dash = []string{"7 4", "2 3", "10 3 2 3"}[grey%3]
			grey++
		} else {
			l.Color = palette[colour%len(palette)]
			colour++
		}
		var pts [2][]string
		for i, c := range conns {
			v, ok := s.rps[c]
			if !ok {
				continue
			}
			p0 := point{d.Panels[0].X + xOf(i), d.Panels[0].Y + yPos(v, rpsLo, rpsHi)}
			ms := float64(s.p99[c]) / float64(time.Millisecond)
			p1 := point{d.Panels[1].X + xOf(i), d.Panels[1].Y + yPos(ms, p99Lo, p99Hi)}
			l.Dots[0], l.Dots[1] = append(l.Dots[0], p0), append(l.Dots[1], p1)
			pts[0] = append(pts[0], fmt.Sprintf("%.1f,%.1f", p0.X, p0.Y))
			pts[1] = append(pts[1], fmt.Sprintf("%.1f,%.1f", p1.X, p1.Y))
		}
		l.Points = [2]string{strings.Join(pts[0], " "), strings.Join(pts[1], " ")}
		d.Lines = append(d.Lines, l)
	}
	rows := (len(d.Lines) + 2) / 3
	d.Width = marginL + 2*panelW + panelGap + 40
	d.Height = legendTop + float64(rows)*legendRowH + 20
	var buf bytes.Buffer
	if err := chartTemplate.Execute(&buf, d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// logBounds widens the values' range to whole decades (at least one).
func logBounds(vals []float64) (float64, float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		if v > 0 {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	if math.IsInf(lo, 1) {
		return 1, 10
	}
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	return lo, hi
}

// yPos maps v into the panel's height, top is hi.
func yPos(v, lo, hi float64) float64 {
	if v <= 0 {
		v = lo
	}
	f := (math.Log10(v) - math.Log10(lo)) / (math.Log10(hi) - math.Log10(lo))
	return panelH * (1 - f)
}

// logTicks puts ticks at 1, 2 and 5 times each power of ten; Pos holds the
// value, which the caller maps to a position.
func logTicks(lo, hi float64, format func(float64) string) []chartTick {
	var ts []chartTick
	for dec := lo; dec < hi*1.0001; dec *= 10 {
		for _, m := range []float64{1, 2, 5} {
			v := dec * m
			if v > hi*1.0001 {
				break
			}
			ts = append(ts, chartTick{Pos: v, Label: format(v)})
		}
	}
	return ts
}

func fmtCount(v float64) string {
	switch {
	case v >= 1e6:
		return trimFloat(v/1e6) + "M"
	case v >= 1e3:
		return trimFloat(v/1e3) + "k"
	}
	return trimFloat(v)
}

func fmtMillis(v float64) string { return trimFloat(v) }

func trimFloat(v float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}

func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s)) //nolint:errcheck // a strings.Builder does not fail
	return b.String()
}

func add(a, b float64) float64 { return a + b }

func legendPos(i int) point {
	return point{X: marginL + float64(i%3)*((2*panelW+panelGap)/3), Y: legendTop + float64(i/3)*legendRowH}
}

var chartTemplate = template.Must(template.New("chart").Funcs(template.FuncMap{
	"esc": xmlEscape, "add": add, "legend": legendPos,
}).Parse(`<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="{{add (index .Panels 0).X 0}}" y="20" font-size="16" font-weight="bold">{{esc .Title}}</text>
<text x="{{add (index .Panels 0).X 0}}" y="40" fill="#555555">{{esc .Subtitle}}</text>
{{- range $p := .Panels}}
<g>
<text x="{{$p.X}}" y="{{add $p.Y -10}}" font-weight="bold">{{esc $p.Title}}</text>
<rect x="{{$p.X}}" y="{{$p.Y}}" width="{{$.W}}" height="{{$.H}}" fill="none" stroke="#333333"/>
{{- range $p.YTicks}}
<line x1="{{$p.X}}" x2="{{add $p.X $.W}}" y1="{{add $p.Y .Pos}}" y2="{{add $p.Y .Pos}}" stroke="#e5e5e5"/>
<text x="{{add $p.X -6}}" y="{{add (add $p.Y .Pos) 4}}" text-anchor="end">{{esc .Label}}</text>
{{- end}}
{{- range $.XTicks}}
<line x1="{{add $p.X .Pos}}" x2="{{add $p.X .Pos}}" y1="{{add $p.Y $.H}}" y2="{{add (add $p.Y $.H) 5}}" stroke="#333333"/>
<text x="{{add $p.X .Pos}}" y="{{add (add $p.Y $.H) 18}}" text-anchor="middle">{{esc .Label}}</text>
{{- end}}
<text x="{{add $p.X 210}}" y="{{add (add $p.Y $.H) 34}}" text-anchor="middle">concurrent connections</text>
</g>
{{- end}}
{{- range $i, $l := .Lines}}
<g stroke="{{$l.Color}}" fill="{{$l.Color}}">
<polyline points="{{index $l.Points 0}}" fill="none" stroke-width="2"{{if $l.Dash}} stroke-dasharray="{{$l.Dash}}"{{end}}/>
<polyline points="{{index $l.Points 1}}" fill="none" stroke-width="2"{{if $l.Dash}} stroke-dasharray="{{$l.Dash}}"{{end}}/>
{{- range index $l.Dots 0}}
<circle cx="{{printf "%.1f" .X}}" cy="{{printf "%.1f" .Y}}" r="3"/>
{{- end}}
{{- range index $l.Dots 1}}
<circle cx="{{printf "%.1f" .X}}" cy="{{printf "%.1f" .Y}}" r="3"/>
{{- end}}
{{- $lp := legend $i}}
<line x1="{{$lp.X}}" x2="{{add $lp.X 24}}" y1="{{$lp.Y}}" y2="{{$lp.Y}}" stroke-width="2"{{if $l.Dash}} stroke-dasharray="{{$l.Dash}}"{{end}}/>
<text x="{{add $lp.X 30}}" y="{{add $lp.Y 4}}" stroke="none" fill="#222222">{{esc $l.Label}}</text>
</g>
{{- end}}
</svg>
`))

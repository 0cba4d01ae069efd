package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// chartFromJSON draws requests, refused requests and delivered batches
// (actions / 50) per second from a -json result, as a self-contained SVG.
func chartFromJSON(in, out, title string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var r struct {
		Samples []sample `json:"samples"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	const w, h, left, right, top, bottom = 980, 360, 60, 250, 40, 50
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	maxY := 10
	for _, s := range r.Samples {
		maxY = max(maxY, s.Requests, s.Delivered/50)
	}
	maxY = (maxY/50 + 1) * 50
	n := max(len(r.Samples), 2)
	x := func(t int) float64 { return float64(left) + pw*float64(t-1)/float64(n-1) }
	y := func(v int) float64 { return float64(top) + ph - ph*float64(v)/float64(maxY) }
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`, w, h)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`, left, title)
	for v := 0; v <= maxY; v += maxY / 5 {
		fmt.Fprintf(&sb, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e5e5e5"/><text x="%d" y="%.1f" text-anchor="end">%d</text>`,
			left, w-right, y(v), y(v), left-6, y(v)+4, v)
	}
	for t := 0; t <= n; t += 30 {
		if t == 0 {
			continue
		}
		fmt.Fprintf(&sb, `<text x="%.1f" y="%d" text-anchor="middle">%ds</text>`, x(t), h-bottom+18, t)
	}
	fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="middle">time since start</text>`, left+int(pw/2), h-10)
	series := []struct {
		name, color string
		v           func(sample) int
	}{
		{"requests/s", "#1f77b4", func(s sample) int { return s.Requests }},
		{"refused/s (quota, outage)", "#d62728", func(s sample) int { return s.Throttled }},
		{"delivered batches/s (actions/50)", "#2ca02c", func(s sample) int { return s.Delivered / 50 }},
	}
	for i, se := range series {
		var pts []string
		for _, s := range r.Samples {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.T), y(se.v(s))))
		}
		fmt.Fprintf(&sb, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`, se.color, strings.Join(pts, " "))
		fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="12" height="3" fill="%s"/><text x="%d" y="%d">%s</text>`,
			w-right+10, top+10+i*20, se.color, w-right+28, top+15+i*20, se.name)
	}
	sb.WriteString(`</svg>`)
	return os.WriteFile(out, []byte(sb.String()), 0o644)
}

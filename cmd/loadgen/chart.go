package main

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// A hand-written SVG line chart: latency (log scale) against offered load.

type chartPoint struct {
	X, Y   float64 // offered req/s; latency in ms
	Hollow bool    // drawn open: the step did not keep up
}

type chartSeries struct {
	Name   string
	Color  string
	Dashed bool
	Labels bool // print each point's value beside it
	Points []chartPoint
}

type chart struct {
	Title, Subtitle string
	XLabel, YLabel  string
	Notes           []string // lines under the plot
	Series          []chartSeries
}

const (
	svgW, svgH     = 1010, 600
	plotL, plotR   = 90, svgW - 255
	plotT, plotB   = 80, svgH - 110
	legendX        = plotR + 25
	chartFontStack = "DejaVu Sans, Helvetica, Arial, sans-serif"
)

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// niceStep returns a 1-2-5 step near span/n.
func niceStep(span float64, n int) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

// fmtCount: 500, 2k, 2.5k, 1M.
func fmtCount(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 4, 64) + "M"
	case v >= 1000:
		return strconv.FormatFloat(v/1e3, 'g', 4, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
}

// fmtMs: 0.2 ms, 5 ms, 2 s.
func fmtMs(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v/1000, 'g', 3, 64) + " s"
	}
	return strconv.FormatFloat(v, 'g', 3, 64) + " ms"
}

// writeSVG draws c: a linear x axis from 0 and a logarithmic y axis over
// whole decades.
func writeSVG(out io.Writer, c chart) error {
	w := bufio.NewWriter(out)
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }

	// Ranges.
	maxX, minY, maxY := 0.0, math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for _, pt := range s.Points {
			maxX = max(maxX, pt.X)
			if pt.Y > 0 {
				minY, maxY = min(minY, pt.Y), max(maxY, pt.Y)
			}
		}
	}
	if maxX <= 0 {
		maxX = 1
	}
	xStep := niceStep(maxX*1.05, 6)
	xMax := math.Ceil(maxX*1.05/xStep) * xStep
	if math.IsInf(minY, 1) {
		minY, maxY = 0.1, 10
	}
	loDec := math.Floor(math.Log10(minY))
	hiDec := math.Ceil(math.Log10(maxY))
	if hiDec <= loDec {
		hiDec = loDec + 1
	}
	xPos := func(x float64) float64 { return plotL + (plotR-plotL)*x/xMax }
	yPos := func(y float64) float64 {
		y = max(y, math.Pow(10, loDec))
		return plotB - (plotB-plotT)*(math.Log10(y)-loDec)/(hiDec-loDec)
	}

	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s" font-size="13">`+"\n",
		svgW, svgH, svgW, svgH, chartFontStack)
	p(`<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", svgW, svgH)
	p(`<text x="%d" y="32" font-size="19" font-weight="bold" fill="#111">%s</text>`+"\n", plotL, esc(c.Title))
	if c.Subtitle != "" {
		p(`<text x="%d" y="55" font-size="12" fill="#555">%s</text>`+"\n", plotL, esc(c.Subtitle))
	}

	// Grid and y ticks: every 1, 2, 5 of each decade; labels on 1-2-5
	// when there are few decades, else on the decades only.
	decades := int(hiDec - loDec)
	p(`<g id="y-axis">` + "\n")
	for d := loDec; d <= hiDec; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if d == hiDec && m > 1 {
				break
			}
			y := yPos(v)
			stroke, width := "#e3e3e3", "1"
			if m == 1 {
				stroke = "#c8c8c8"
			}
			p(`<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="%s" stroke-width="%s"/>`+"\n", plotL, f1(y), plotR, f1(y), stroke, width)
			if m == 1 || decades <= 3 {
				p(`<text x="%d" y="%s" text-anchor="end" fill="#333">%s</text>`+"\n", plotL-8, f1(y+4), esc(fmtMs(v)))
			}
		}
	}
	p("</g>\n")
	p(`<g id="x-axis">` + "\n")
	for x := 0.0; x <= xMax+xStep/2; x += xStep {
		xp := xPos(x)
		p(`<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="#ececec"/>`+"\n", f1(xp), plotT, f1(xp), plotB)
		p(`<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="#333"/>`+"\n", f1(xp), plotB, f1(xp), plotB+5)
		p(`<text x="%s" y="%d" text-anchor="middle" fill="#333">%s</text>`+"\n", f1(xp), plotB+20, esc(fmtCount(x)))
	}
	p("</g>\n")
	// Axes and their labels.
	p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333" stroke-width="1.5"/>`+"\n", plotL, plotB, plotR, plotB)
	p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333" stroke-width="1.5"/>`+"\n", plotL, plotT, plotL, plotB)
	p(`<text x="%d" y="%d" text-anchor="middle" font-size="14" fill="#111">%s</text>`+"\n", (plotL+plotR)/2, plotB+45, esc(c.XLabel))
	p(`<text x="%d" y="%d" text-anchor="middle" font-size="14" fill="#111" transform="rotate(-90 %d %d)">%s</text>`+"\n",
		24, (plotT+plotB)/2, 24, (plotT+plotB)/2, esc(c.YLabel))

	// Series.
	for i, s := range c.Series {
		p(`<g id="series-%d">`+"\n", i)
		if len(s.Points) > 1 {
			var pts []string
			for _, pt := range s.Points {
				pts = append(pts, f1(xPos(pt.X))+","+f1(yPos(pt.Y)))
			}
			dash := ""
			if s.Dashed {
				dash = ` stroke-dasharray="7 5"`
			}
			p(`<polyline fill="none" stroke="%s" stroke-width="2.2"%s points="%s"/>`+"\n", s.Color, dash, strings.Join(pts, " "))
		}
		for _, pt := range s.Points {
			fill := s.Color
			if pt.Hollow {
				fill = "#ffffff"
			}
			x, y := xPos(pt.X), yPos(pt.Y)
			p(`<circle cx="%s" cy="%s" r="4.5" fill="%s" stroke="%s" stroke-width="2"><title>%s at %s req/s: %s</title></circle>`+"\n",
				f1(x), f1(y), fill, s.Color, esc(s.Name), esc(fmtCount(pt.X)), esc(fmtMs(pt.Y)))
			if s.Labels {
				p(`<text x="%s" y="%s" font-size="11" fill="%s" stroke="#ffffff" stroke-width="3" paint-order="stroke">%s</text>`+"\n",
					f1(x+7), f1(y-7), s.Color, esc(fmtMs(pt.Y)))
			}
		}
		p("</g>\n")
	}

	// Legend.
	p(`<g id="legend">` + "\n")
	ly := plotT + 10
	for _, s := range c.Series {
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="7 5"`
		}
		p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2.2"%s/>`+"\n", legendX, ly, legendX+28, ly, s.Color, dash)
		p(`<circle cx="%d" cy="%d" r="4" fill="%s"/>`+"\n", legendX+14, ly, s.Color)
		p(`<text x="%d" y="%d" fill="#111">%s</text>`+"\n", legendX+36, ly+4, esc(s.Name))
		ly += 24
	}
	p(`<circle cx="%d" cy="%d" r="4" fill="#ffffff" stroke="#555" stroke-width="2"/>`+"\n", legendX+14, ly)
	p(`<text x="%d" y="%d" fill="#555" font-size="12">did not keep up</text>`+"\n", legendX+36, ly+4)
	p(`<text x="%d" y="%d" fill="#555" font-size="12">(achieved &lt; 95%% of offered,</text>`+"\n", legendX+36, ly+20)
	p(`<text x="%d" y="%d" fill="#555" font-size="12">or non-202 answers)</text>`+"\n", legendX+36, ly+36)
	p("</g>\n")

	for i, n := range c.Notes {
		p(`<text x="%d" y="%d" font-size="12" fill="#555">%s</text>`+"\n", plotL, plotB+70+18*i, esc(n))
	}
	p("</svg>\n")
	return w.Flush()
}

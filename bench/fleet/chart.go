package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// chartFromJSON draws an earlier -json result as a self-contained SVG: the
// Tencent scenario's per-second samples, or the TongDun scenario's timeline
// and per-agent shares.
func chartFromJSON(in, out, title string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var head struct {
		Scenario string `json:"scenario"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return err
	}
	var svg string
	if head.Scenario == "tongdun" {
		var r tdResult
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		svg = tongdunChart(&r, title)
	} else {
		var r struct {
			Samples []sample `json:"samples"`
			Outage  float64  `json:"outage_s"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		svg = tencentChart(r.Samples, int(r.Outage), title)
	}
	return os.WriteFile(out, []byte(svg), 0o644)
}

// tencentChart draws requests, refused requests and delivered batches
// (actions / 50) per second, with the clock minutes (the simulator's quota
// windows) and the end of the outage marked.
func tencentChart(samples []sample, outage int, title string) string {
	const w, h, left, right, top, bottom = 980, 360, 60, 250, 40, 50
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	maxY := 10
	for _, s := range samples {
		maxY = max(maxY, s.Requests, s.Delivered/50)
	}
	step := niceStep(maxY)
	maxY = (maxY/step + 1) * step
	n := max(len(samples), 2)
	x := func(t int) float64 { return float64(left) + pw*float64(t-1)/float64(n-1) }
	y := func(v int) float64 { return float64(top) + ph - ph*float64(v)/float64(maxY) }
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`, w, h)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`, left, esc(title))
	for v := 0; v <= maxY; v += step {
		fmt.Fprintf(&sb, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e5e5e5"/><text x="%d" y="%.1f" text-anchor="end">%d</text>`,
			left, w-right, y(v), y(v), left-6, y(v)+4, v)
	}
	for _, s := range samples {
		if s.Unix != 0 && s.Unix%60 == 0 {
			fmt.Fprintf(&sb, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#bbb" stroke-dasharray="3,3"/>`, x(s.T), x(s.T), top, h-bottom)
		}
	}
	if outage > 0 && outage < n {
		fmt.Fprintf(&sb, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#555"/><text x="%.1f" y="%d" fill="#555">outage ends</text>`,
			x(outage), x(outage), top, h-bottom, x(outage)+4, top+12)
	}
	for t := 30; t <= n; t += 30 {
		fmt.Fprintf(&sb, `<text x="%.1f" y="%d" text-anchor="middle">%ds</text>`, x(t), h-bottom+18, t)
	}
	fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="middle">time since start (dashed: a new clock minute, a fresh quota window)</text>`, left+int(pw/2), h-10)
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
		for _, s := range samples {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.T), y(se.v(s))))
		}
		fmt.Fprintf(&sb, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`, se.color, strings.Join(pts, " "))
		legend(&sb, w-right+10, top+10+i*20, se.color, se.name)
	}
	sb.WriteString(`</svg>`)
	return sb.String()
}

// tongdunChart: on top, the requests TongDun received per timeline bucket
// (accepted, refused with 305), one panel per stretch of time that ran,
// the skipped nights between them; below, what each agent got of each
// day's quota, agents ordered by how far their clock is off TongDun's.
func tongdunChart(r *tdResult, title string) string {
	const w, left, right, top = 1040, 60, 250, 40
	const ph, gap = 260.0, 70.0 // time panels' height; between panels
	const barTop, barH = top + ph + 90, 170.0
	h := int(barTop + barH + 60)
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`, w, h)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`, left, esc(title))

	// Time panels.
	segs := map[int][]tdBucket{}
	var ids []int
	maxY := 10
	for _, b := range r.Timeline {
		if _, ok := segs[b.Seg]; !ok {
			ids = append(ids, b.Seg)
		}
		segs[b.Seg] = append(segs[b.Seg], b)
		maxY = max(maxY, b.Requests)
	}
	sort.Ints(ids)
	step := niceStep(maxY)
	maxY = (maxY/step + 1) * step
	total := 0
	for _, id := range ids {
		total += len(segs[id])
	}
	pw := float64(w-left-right) - gap*float64(max(len(ids)-1, 0))
	bucket := 100 * time.Millisecond
	if len(r.Timeline) > 1 {
		bucket = r.Timeline[1].T.Sub(r.Timeline[0].T)
	}
	y := func(v int) float64 { return top + ph - ph*float64(v)/float64(maxY) }
	for v := 0; v <= maxY; v += step {
		fmt.Fprintf(&sb, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e5e5e5"/><text x="%d" y="%.1f" text-anchor="end">%d</text>`,
			left, w-right, y(v), y(v), left-6, y(v)+4, v)
	}
	fmt.Fprintf(&sb, `<text x="14" y="%.1f" transform="rotate(-90 14 %.1f)" text-anchor="middle">requests per %s</text>`, top+ph/2, top+ph/2, bucket)
	x0 := float64(left)
	for i, id := range ids {
		bs := segs[id]
		sw := pw * float64(len(bs)) / float64(total)
		x := func(k int) float64 { return x0 + sw*float64(k)/float64(max(len(bs)-1, 1)) }
		for k, b := range bs {
			// Whole seconds, and midnight in Shanghai.
			local := b.T.In(shanghai)
			if local.Nanosecond() >= int(bucket) {
				continue
			}
			if local.Hour() == 0 && local.Minute() == 0 && local.Second() == 0 {
				fmt.Fprintf(&sb, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke="#555" stroke-dasharray="4,3"/><text x="%.1f" y="%d" fill="#555" text-anchor="end">%s 00:00 CST</text>`,
					x(k), x(k), top, top+ph, x(k)-3, top+12, local.Format("Jan 2"))
			}
			fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%s</text>`, x(k), top+ph+14, local.Format("15:04:05"))
		}
		// Requests as an area, accepted and refused as lines over it.
		area := []string{fmt.Sprintf("%.1f,%.1f", x(0), y(0))}
		for k, b := range bs {
			area = append(area, fmt.Sprintf("%.1f,%.1f", x(k), y(b.Requests)))
		}
		area = append(area, fmt.Sprintf("%.1f,%.1f", x(len(bs)-1), y(0)))
		fmt.Fprintf(&sb, `<polygon fill="#c6dbef" stroke="none" points="%s"/>`, strings.Join(area, " "))
		for _, se := range []struct {
			color string
			v     func(tdBucket) int
		}{
			{"#2ca02c", func(b tdBucket) int { return b.Accepted }},
			{"#d62728", func(b tdBucket) int { return b.Capped }},
		} {
			var pts []string
			for k, b := range bs {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(k), y(se.v(b))))
			}
			fmt.Fprintf(&sb, `<polyline fill="none" stroke="%s" stroke-width="1.8" points="%s"/>`, se.color, strings.Join(pts, " "))
		}
		// How many 305s, at the highest bucket of them.
		capped, peak := 0, 0
		for k, b := range bs {
			capped += b.Capped
			if b.Capped > bs[peak].Capped {
				peak = k
			}
		}
		if capped > 0 {
			fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" fill="#d62728" text-anchor="middle" font-weight="bold">%d × 305</text>`,
				x(peak), y(bs[peak].Capped)-8, capped)
		}
		x0 += sw
		if i < len(ids)-1 {
			from, to := bs[len(bs)-1].T.In(shanghai), segs[ids[i+1]][0].T.In(shanghai)
			mid := x0 + gap/2
			fmt.Fprintf(&sb, `<rect x="%.1f" y="%d" width="%.1f" height="%.1f" fill="#f2f2f2"/>`, x0+4, top, gap-8, ph)
			fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10" fill="#555">all paused:</text>`, mid, top+ph/2-20)
			fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10" fill="#555">%s skipped</text>`, mid, top+ph/2-6, roundDur(to.Sub(from)))
			fmt.Fprintf(&sb, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10" fill="#555">(0 requests)</text>`, mid, top+ph/2+8)
			x0 += gap
		}
	}
	fmt.Fprintf(&sb, `<text x="%d" y="%.1f" text-anchor="middle">simulated time, Asia/Shanghai (TongDun's clock)</text>`, left+int(pw/2+gap/2), top+ph+32)
	for i, l := range []struct{ c, n string }{{"#c6dbef", "requests"}, {"#2ca02c", "accepted (200)"}, {"#d62728", "refused: daily cap (305)"}} {
		legend(&sb, w-right+12, top+10+i*20, l.c, l.n)
	}

	// Per-agent shares, by stretch of time: before the first night, after
	// it, after a second one.
	labels := []string{r.Start.In(shanghai).Format("Jan 2") + ", before the cap"}
	for i, n := range r.Nights {
		l := "after midnight (" + n.Midnight.In(shanghai).Format("Jan 2") + ")"
		if i > 0 {
			l = "a day late (" + n.Midnight.In(shanghai).Format("Jan 2") + ")"
		}
		labels = append(labels, l)
	}
	order := make([]int, len(r.PerAgent))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return r.PerAgent[order[i]].OffsetMS < r.PerAgent[order[j]].OffsetMS })
	maxA := 1
	for _, a := range r.PerAgent {
		n := 0
		for _, v := range a.AcceptedBy {
			n += v
		}
		maxA = max(maxA, n)
	}
	stepA := niceStep(maxA)
	maxA = (maxA/stepA + 1) * stepA
	bw := float64(w-left-right) / float64(max(len(order), 1))
	ya := func(v int) float64 { return barTop + barH - barH*float64(v)/float64(maxA) }
	fmt.Fprintf(&sb, `<text x="%d" y="%.1f" font-weight="bold">Checks accepted per agent</text>`, left, barTop-12)
	for v := 0; v <= maxA; v += stepA {
		fmt.Fprintf(&sb, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e5e5e5"/><text x="%d" y="%.1f" text-anchor="end">%d</text>`,
			left, w-right, ya(v), ya(v), left-6, ya(v)+4, v)
	}
	colors := []string{"#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd"}
	for i, ai := range order {
		a := r.PerAgent[ai]
		acc := 0
		for k, n := range a.AcceptedIn {
			if n == 0 {
				continue
			}
			fmt.Fprintf(&sb, `<rect x="%.2f" y="%.1f" width="%.2f" height="%.1f" fill="%s"/>`,
				float64(left)+bw*float64(i), ya(acc+n), max(bw-0.3, 0.5), ya(acc)-ya(acc+n), colors[k%len(colors)])
			acc += n
		}
	}
	axis := "agents"
	if r.SkewMS > 0 {
		axis = fmt.Sprintf("agents, by how far their clock is off TongDun's: %.0f ms behind … %.0f ms ahead",
			r.SkewMS, r.SkewMS)
	}
	fmt.Fprintf(&sb, `<text x="%d" y="%.1f" text-anchor="middle">%s</text>`, left+(w-left-right)/2, barTop+barH+20, axis)
	for k, l := range labels {
		legend(&sb, w-right+12, int(barTop)+10+k*20, colors[k%len(colors)], l)
	}
	sb.WriteString(`</svg>`)
	return sb.String()
}

func legend(sb *strings.Builder, x, y int, color, name string) {
	fmt.Fprintf(sb, `<rect x="%d" y="%d" width="12" height="3" fill="%s"/><text x="%d" y="%d">%s</text>`, x, y, color, x+18, y+5, esc(name))
}

func niceStep(maxV int) int {
	for _, s := range []int{1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000} {
		if maxV/s <= 6 {
			return s
		}
	}
	return 10000
}

func roundDur(d time.Duration) string {
	if d >= time.Hour {
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return d.Round(time.Second).String()
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"strconv"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// series is one line of a panel: a system's values of one metric against
// the number of Services (or agents).
type series struct {
	Label  string
	Color  color.RGBA
	Dashed bool
	X, Y   []float64
}

// panel is one chart: log-scaled axes, since sizes grow by 10×, unless
// Linear (values against time).
type panel struct {
	Title, XLabel, YLabel string
	Series                []series
	Linear                bool
}

var palette = []color.RGBA{
	{0x1f, 0x77, 0xb4, 0xff}, // doorman
	{0xd6, 0x27, 0x28, 0xff}, // kube-proxy nftables
	{0x2c, 0xa0, 0x2c, 0xff}, // kube-proxy iptables
	{0x94, 0x67, 0xbd, 0xff},
	{0xff, 0x7f, 0x0e, 0xff},
	{0x8c, 0x56, 0x4b, 0xff},
}

// writePlot draws the panels side by side into a PNG at path.
func writePlot(path string, panels []panel) error {
	const pw, ph = 560, 420
	img := image.NewRGBA(image.Rect(0, 0, pw*len(panels), ph))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	for i, p := range panels {
		drawPanel(img, image.Rect(i*pw, 0, (i+1)*pw, ph), p)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		_ = f.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return f.Close()
}

func drawPanel(img *image.RGBA, r image.Rectangle, p panel) {
	plot := image.Rect(r.Min.X+70, r.Min.Y+40, r.Max.X-20, r.Max.Y-60)
	black := color.RGBA{0, 0, 0, 0xff}
	grey := color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	text(img, r.Min.X+70, r.Min.Y+20, p.Title, black)
	text(img, plot.Min.X+plot.Dx()/2-len(p.XLabel)*7/2, r.Max.Y-15, p.XLabel, black)
	text(img, r.Min.X+5, r.Min.Y+35, p.YLabel, black)

	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range p.Series {
		for i := range s.X {
			if !p.Linear && (s.X[i] <= 0 || s.Y[i] <= 0) {
				continue
			}
			xmin, xmax = math.Min(xmin, s.X[i]), math.Max(xmax, s.X[i])
			ymin, ymax = math.Min(ymin, s.Y[i]), math.Max(ymax, s.Y[i])
		}
	}
	if math.IsInf(xmin, 1) {
		text(img, plot.Min.X+10, plot.Min.Y+20, "no data", black)
		return
	}
	xa, ya := newAxis(xmin, xmax, p.Linear), newAxis(ymin, ymax, p.Linear)
	px := func(x float64) int { return plot.Min.X + int(xa.frac(x)*float64(plot.Dx())) }
	py := func(y float64) int { return plot.Max.Y - int(ya.frac(y)*float64(plot.Dy())) }
	for _, t := range xa.ticks() {
		x := px(t)
		line(img, x, plot.Min.Y, x, plot.Max.Y, grey, false)
		text(img, x-12, plot.Max.Y+16, xa.label(t), black)
	}
	for _, t := range ya.ticks() {
		y := py(t)
		line(img, plot.Min.X, y, plot.Max.X, y, grey, false)
		text(img, plot.Min.X-62, y+4, ya.label(t), black)
	}
	line(img, plot.Min.X, plot.Max.Y, plot.Max.X, plot.Max.Y, black, false)
	line(img, plot.Min.X, plot.Min.Y, plot.Min.X, plot.Max.Y, black, false)

	legend := 0
	for _, s := range p.Series {
		legend = max(legend, len(s.Label))
	}
	lx := max(plot.Min.X+10, plot.Max.X-7*legend-35)
	for i, s := range p.Series {
		prevX, prevY, have := 0, 0, false
		for j := range s.X {
			if !p.Linear && (s.X[j] <= 0 || s.Y[j] <= 0) {
				continue
			}
			x, y := px(s.X[j]), py(s.Y[j])
			if have {
				line(img, prevX, prevY, x, y, s.Color, s.Dashed)
			}
			draw.Draw(img, image.Rect(x-3, y-3, x+4, y+4), image.NewUniform(s.Color), image.Point{}, draw.Src)
			if s.Dashed { // hollow marker
				draw.Draw(img, image.Rect(x-1, y-1, x+2, y+2), image.White, image.Point{}, draw.Src)
			}
			prevX, prevY, have = x, y, true
		}
		ly := plot.Min.Y + 14 + 16*i
		line(img, lx, ly-4, lx+20, ly-4, s.Color, s.Dashed)
		text(img, lx+25, ly, s.Label, black)
	}
}

// axis maps values to [0, 1]: whole decades around the data on a log
// axis, from 0 to a round number above the data on a linear one.
type axis struct {
	lo, hi float64 // decades on a log axis
	step   float64 // between ticks on a linear axis
	log    bool
}

func newAxis(vmin, vmax float64, linear bool) axis {
	if linear {
		step := niceStep(vmax / 5)
		hi := math.Ceil(vmax/step) * step
		if hi <= 0 {
			hi, step = 1, 0.2
		}
		return axis{lo: 0, hi: hi, step: step}
	}
	lo, hi := math.Floor(math.Log10(vmin)), math.Ceil(math.Log10(vmax))
	if hi == lo {
		hi++
	}
	return axis{lo: lo, hi: hi, log: true}
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func (a axis) frac(v float64) float64 {
	if a.log {
		return (math.Log10(v) - a.lo) / (a.hi - a.lo)
	}
	return (v - a.lo) / (a.hi - a.lo)
}

func (a axis) ticks() []float64 {
	var out []float64
	if a.log {
		for d := a.lo; d <= a.hi; d++ {
			out = append(out, math.Pow(10, d))
		}
		return out
	}
	for v := a.lo; v <= a.hi+a.step/2; v += a.step {
		out = append(out, v)
	}
	return out
}

func (a axis) label(v float64) string {
	if a.log {
		return decade(math.Log10(v))
	}
	return fmt.Sprintf("%g", math.Round(v*1000)/1000)
}

// decade labels 10^d readably: 1ms, 10, 100k …
func decade(d float64) string {
	v := math.Pow(10, d)
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	case v >= 1:
		return fmt.Sprintf("%g", v)
	default:
		// 10^-1 is not exactly 0.1 in floating point: round to the
		// decade's one significant digit.
		return strconv.FormatFloat(v, 'g', 1, 64)
	}
}

func text(img *image.RGBA, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// line draws from (x0,y0) to (x1,y1), two pixels wide (Bresenham).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA, dashed bool) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for n := 0; ; n++ {
		if !dashed || (n/6)%2 == 0 {
			img.SetRGBA(x0, y0, c)
			img.SetRGBA(x0+1, y0, c)
			img.SetRGBA(x0, y0+1, c)
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// plotPanels turns records into the panels of the view (registry's
// panels, in order): one series per system and metric the panel shows.
func plotPanels(r *report, systems []string, v view) []panel {
	var out []panel
	for _, g := range panels {
		if g.View&v == 0 {
			continue
		}
		p := panel{Title: g.Title, XLabel: g.XLabel, YLabel: g.YLabel}
		metrics := metricsShown(g.View)
		for si, sys := range systems {
			for mi, m := range metrics {
				s := series{Label: sys, Color: palette[si%len(palette)], Dashed: mi > 0}
				if len(metrics) > 1 {
					s.Label = sys + " " + m.Legend
				}
				for _, rec := range r.records {
					if rec.System == sys && rec.Metric == m.Key {
						s.X = append(s.X, float64(rec.Services))
						s.Y = append(s.Y, rec.Value)
					}
				}
				if len(s.X) > 0 {
					p.Series = append(p.Series, s)
				}
			}
		}
		out = append(out, p)
	}
	return out
}

// panelSpec is one panel of a plot: the metrics registered with its view.
type panelSpec struct {
	View                  view
	Title, XLabel, YLabel string
}

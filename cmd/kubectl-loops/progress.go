package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress draws a one-line progress bar on a terminal-like writer.
type progress struct {
	w     io.Writer
	what  string
	total int
	start time.Time
	last  time.Time
	n     int
	ended bool
}

func newProgress(w io.Writer, what string, total int) *progress {
	p := &progress{w: w, what: what, total: total, start: time.Now()}
	if total > 1 {
		p.draw()
	}
	return p
}

func (p *progress) set(n int) {
	p.n = n
	if p.total > 1 && (time.Since(p.last) > 100*time.Millisecond || n == p.total) {
		p.draw()
	}
}

func (p *progress) draw() {
	p.last = time.Now()
	const width = 30
	filled := width * p.n / max(p.total, 1)
	fmt.Fprintf(p.w, "\r%s [%s%s] %d/%d %3d%% %s", p.what, strings.Repeat("=", filled), strings.Repeat(" ", width-filled),
		p.n, p.total, 100*p.n/max(p.total, 1), time.Since(p.start).Round(100*time.Millisecond))
}

// done ends the bar's line; calling it again does nothing.
func (p *progress) done() {
	if p.total > 1 && !p.ended {
		p.ended = true
		fmt.Fprintln(p.w)
	}
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// figure is one of ours beside its anchor.
type figure struct {
	What           string // e.g. "ns/op, GOMAXPROCS=2"
	Procs          int    // GOMAXPROCS of a Go benchmark's figure; 0 otherwise
	Ours, Anchor   string
	OursV, AnchorV float64
	Unit           string
	// Ratio is OursV/AnchorV; negative when the figure is not a ratio.
	Ratio float64
	// GoalMax and GoalMin bound the ratio when set; Goal says it in words
	// for a goal of another form.
	GoalMax, GoalMin float64
	Goal             string
	// Met is nil for a figure without a goal.
	Met *bool
}

func (f *figure) metString() string {
	switch {
	case f.Met == nil:
		return "no goal"
	case *f.Met:
		return "met"
	default:
		return "MISSED"
	}
}

// section is one part of the report.
type section struct {
	Title, Intro string
	Commands     []string
	Benchstat    string
	// Details are more lines of the part's own (medians, samples).
	Details  string
	Figures  []*figure
	Profiles []string
	Notes    []string
	Took     time.Duration
}

// add appends f, deciding Met from GoalMax/GoalMin when set.
func (s *section) add(f *figure) {
	switch {
	case f.GoalMax > 0:
		f.Goal = fmt.Sprintf("≤ %.2f×", f.GoalMax)
		f.Met = ptr(f.Ratio <= f.GoalMax)
	case f.GoalMin > 0:
		f.Goal = fmt.Sprintf("≥ %.2f×", f.GoalMin)
		f.Met = ptr(f.Ratio >= f.GoalMin)
	}
	s.Figures = append(s.Figures, f)
}

// machine describes where the figures were taken.
type machine struct {
	CPU, Go, Kernel, Commit, Date string
	Cores                         int
	MemGiB                        float64
	LoadBefore, LoadAfter         string
	LoadBefore1                   float64
}

// report is the whole of docs/benchmarks.md.
type report struct {
	Machine  machine
	Sections []*section
	Skipped  []string
	Quick    bool
	Count    int
	Took     time.Duration
}

func (r *report) missed() int {
	n := 0
	for _, s := range r.Sections {
		for _, f := range s.Figures {
			if f.Met != nil && !*f.Met {
				n++
			}
		}
	}
	return n
}

func readMachine(ctx context.Context) (machine, error) {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH, Date: time.Now().UTC().Format("2006-01-02 15:04 MST")}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %f kB", &kb); err == nil {
			m.MemGiB = kb / (1 << 20)
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			m.Commit += " (with uncommitted changes)"
		}
	}
	var err error
	m.LoadBefore, m.LoadBefore1, err = loadAvg()
	return m, err
}

// loadAvg returns the three load averages and the first as a number.
func loadAvg() (string, float64, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "", 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "", 0, fmt.Errorf("/proc/loadavg: %q", b)
	}
	one, _ := strconv.ParseFloat(f[0], 64)
	return strings.Join(f[:3], " "), one, nil
}

func (r *report) write(w io.Writer) error {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("# Benchmarks\n\n")
	p("<!-- Written by `make bench` (hack/bench); edit hack/bench, not this file, except the notes at its end. -->\n\n")
	if r.Quick {
		p("**A smoke run (`-quick`): small sizes and `-count 1`. These figures check that every part runs; they are not measurements.**\n\n")
	}
	p("%s\n\n", introReport)
	m := r.Machine
	p("## Machine and run\n\n")
	p("| | |\n| --- | --- |\n")
	p("| date | %s |\n| commit | %s |\n| CPU | %s, %d logical CPUs |\n| memory | %.1f GiB |\n| kernel | %s |\n| Go | %s |\n", m.Date, m.Commit, m.CPU, m.Cores, m.MemGiB, m.Kernel, m.Go)
	p("| load average (1, 5, 15 min) | %s before, %s after |\n| Go benchmarks | `-count %d`, compared by benchstat |\n| whole run | %s |\n\n", m.LoadBefore, m.LoadAfter, r.Count, r.Took)
	if len(r.Skipped) > 0 {
		p("Left out of this run: %s.\n\n", strings.Join(r.Skipped, ", "))
	}

	p("## Summary\n\n")
	p("Each figure is ours ÷ its anchor, both medians from the same run. %d of the goals were missed in this run.\n\n", r.missed())
	p("| part | figure | ours | anchor | ours ÷ anchor | goal | |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, s := range r.Sections {
		for _, f := range s.Figures {
			if f.Met == nil {
				continue
			}
			p("| %s | %s | %s %s | %s %s | %s | %s | %s |\n", s.Title, f.What, f.Ours, num(f.OursV), f.Anchor, num(f.AnchorV), ratioOf(f), f.Goal, f.metString())
		}
	}
	p("\n")

	for _, s := range r.Sections {
		p("## %s\n\n%s\n\n", s.Title, s.Intro)
		p("Commands (took %s):\n\n```\n%s\n```\n\n", s.Took, strings.Join(s.Commands, "\n"))
		p("| figure | ours | anchor | ours ÷ anchor | goal | |\n| --- | --- | --- | --- | --- | --- |\n")
		for _, f := range s.Figures {
			goal := f.Goal
			if goal == "" {
				goal = "—"
			}
			p("| %s | %s %s | %s %s | %s | %s | %s |\n", f.What, f.Ours, num(f.OursV), f.Anchor, num(f.AnchorV), ratioOf(f), goal, f.metString())
		}
		p("\n")
		if s.Benchstat != "" {
			p("benchstat:\n\n```\n%s\n```\n\n", s.Benchstat)
		}
		if s.Details != "" {
			p("%s\n\n", s.Details)
		}
		for _, n := range s.Notes {
			p("%s\n\n", n)
		}
		for _, prof := range s.Profiles {
			p("A goal was missed; where ours spends its time (CPU profile of one more run):\n\n```\n%s\n```\n\n", prof)
		}
	}
	p("%s\n", outroReport)
	return nil
}

// num formats a figure's value with a precision that suits its size.
func num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1e9:
		return fmt.Sprintf("%.3g", v)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func ratio(r float64) string {
	if r < 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", r)
}

// ratioOf formats f's ratio with two decimals, or three where two would
// show it equal to the goal it missed or met by less.
func ratioOf(f *figure) string {
	if goal := max(f.GoalMax, f.GoalMin); goal > 0 && f.Ratio >= 0 && ratio(f.Ratio) == ratio(goal) && f.Ratio != goal {
		return fmt.Sprintf("%.3f×", f.Ratio)
	}
	return ratio(f.Ratio)
}

// notesMarker starts the notes written by hand under a report (why a goal
// was missed, what a profile shows): make bench keeps them.
const notesMarker = "<!-- Notes written by hand after a run: make bench keeps everything below this line. -->"

// carriedNote heads notes that a later run carried over.
const carriedNote = "_These notes were written for an earlier run than the one above and carried over by `make bench`: read them against its figures and rewrite them._"

// carriedNotes returns the hand-written notes of the report old, marked as
// written for an earlier run, or nil when it has none.
func carriedNotes(old []byte) []byte {
	_, notes, ok := bytes.Cut(old, []byte(notesMarker))
	if !ok {
		return nil
	}
	notes = bytes.TrimSpace(notes)
	notes = bytes.TrimSpace(bytes.TrimPrefix(notes, []byte(carriedNote)))
	if len(notes) == 0 {
		return nil
	}
	return fmt.Appendf(nil, "\n%s\n\n%s\n\n%s\n", notesMarker, carriedNote, notes)
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// goBench describes one `go test -bench` run.
type goBench struct {
	pkg       string
	bench     string // the benchmark's name without "Benchmark"
	benchtime string // -benchtime
	cpu       string // -cpu, empty for the machine's default
}

func (g goBench) args(count int, extra ...string) []string {
	a := []string{"test", "-run", "^$", "-bench", "^Benchmark" + g.bench + "$", "-benchtime", g.benchtime, "-count", strconv.Itoa(count)}
	if g.cpu != "" {
		a = append(a, "-cpu", g.cpu)
	}
	return append(append(a, extra...), g.pkg)
}

// runGo runs the benchmarks, compares them with benchstat and returns the
// medians per impl.
func runGo(ctx context.Context, o *options, id string, g goBench) (*section, map[medianKey]map[string]float64, error) {
	args := g.args(o.count)
	raw := id + ".txt"
	out, err := command(ctx, o, raw, nil, "go", args...)
	if err != nil {
		return nil, nil, err
	}
	samples, err := parseBench(bytes.NewReader(out))
	if err != nil {
		return nil, nil, err
	}
	if len(samples) == 0 {
		return nil, nil, fmt.Errorf("no results in the output of go %s", strings.Join(args, " "))
	}
	stat, err := command(ctx, o, id+".benchstat.txt", nil, "go", "run", benchstat, "-col", "/impl", filepath.Join(o.workDir, raw))
	if err != nil {
		return nil, nil, err
	}
	sec := &section{
		Commands:  []string{"go " + strings.Join(args, " ") + " > " + raw, "benchstat -col /impl " + raw},
		Benchstat: strings.TrimSpace(string(stat)),
	}
	return sec, medians(samples), nil
}

// goFigure compares one unit of ours against an anchor, at one GOMAXPROCS.
func goFigure(m map[medianKey]map[string]float64, bench string, procs int, ours, anchor, unit string) (*figure, error) {
	ov, ok1 := m[medianKey{bench, procs, ours}][unit]
	av, ok2 := m[medianKey{bench, procs, anchor}][unit]
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("%s: no %s for impl=%s or impl=%s at GOMAXPROCS=%d", bench, unit, ours, anchor, procs)
	}
	f := &figure{
		What: fmt.Sprintf("%s, GOMAXPROCS=%d", unit, procs), Procs: procs, Ours: ours, Anchor: anchor,
		OursV: ov, AnchorV: av, Unit: unit,
	}
	if av != 0 {
		f.Ratio = ov / av
	}
	return f, nil
}

// profileMiss profiles ours in a missed Go benchmark and returns the top of
// the CPU profile, so that the report shows where the time goes.
func profileMiss(ctx context.Context, o *options, g goBench, impl string, procs int) (string, error) {
	name := fmt.Sprintf("%s-%s-%d", strings.ToLower(g.bench), impl, procs)
	prof := filepath.Join(o.workDir, name+".cpu.prof")
	bin := filepath.Join(o.workDir, name+".test")
	one := goBench{pkg: g.pkg, bench: g.bench + "$/^impl=" + impl, benchtime: g.benchtime, cpu: strconv.Itoa(procs)}
	if _, err := command(ctx, o, name+".profile.txt", nil, "go", one.args(1, "-cpuprofile", prof, "-o", bin)...); err != nil {
		return "", err
	}
	top, err := command(ctx, o, name+".top.txt", nil, "go", "tool", "pprof", "-top", "-nodecount", "25", bin, prof)
	if err != nil {
		return "", err
	}
	_ = os.Remove(bin)
	return fmt.Sprintf("go %s -cpuprofile %s\ngo tool pprof -top -nodecount 25 %s\n\n%s",
		strings.Join(one.args(1), " "), filepath.Base(prof), filepath.Base(prof), trimProfile(string(top))), nil
}

// trimProfile drops pprof's header lines that name files of this machine.
func trimProfile(s string) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

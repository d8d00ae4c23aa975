package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// sample is one benchmark result line of `go test -bench`, for a
// sub-benchmark named impl=<name>.
type sample struct {
	// Bench is the benchmark's name without "Benchmark" and the impl part,
	// e.g. "Dispatch".
	Bench string
	// Impl is the value of the impl= part, e.g. "pool".
	Impl string
	// Procs is GOMAXPROCS (the -N suffix; 1 when there is none).
	Procs int
	// Values maps a unit (ns/op, B/op, tasks/s, …) to its value.
	Values map[string]float64
}

// benchLine matches a result line; an impl name may hold hyphens but must
// not end in one followed by digits, which is the GOMAXPROCS suffix.
var benchLine = regexp.MustCompile(`^Benchmark([^/\s]+)/impl=(\S+?)(?:-(\d+))?\s+\d+\s+(.+)$`)

// parseBench reads the result lines of `go test -bench` output; lines that
// are not results of an impl= sub-benchmark are skipped.
func parseBench(r io.Reader) ([]sample, error) {
	var out []sample
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		s := sample{Bench: m[1], Impl: m[2], Procs: 1, Values: map[string]float64{}}
		if m[3] != "" {
			s.Procs, _ = strconv.Atoi(m[3])
		}
		fields := strings.Fields(m[4])
		if len(fields)%2 != 0 {
			return nil, fmt.Errorf("odd value/unit pairs in %q", sc.Text())
		}
		for i := 0; i < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("value %q in %q: %w", fields[i], sc.Text(), err)
			}
			s.Values[fields[i+1]] = v
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// medians groups samples by benchmark, GOMAXPROCS and impl and returns the
// median of each unit; the key is "Bench/procs/impl".
type medianKey struct {
	Bench string
	Procs int
	Impl  string
}

func medians(samples []sample) map[medianKey]map[string]float64 {
	all := map[medianKey]map[string][]float64{}
	for _, s := range samples {
		k := medianKey{s.Bench, s.Procs, s.Impl}
		if all[k] == nil {
			all[k] = map[string][]float64{}
		}
		for unit, v := range s.Values {
			all[k][unit] = append(all[k][unit], v)
		}
	}
	out := make(map[medianKey]map[string]float64, len(all))
	for k, units := range all {
		out[k] = map[string]float64{}
		for unit, vs := range units {
			out[k][unit] = median(vs)
		}
	}
	return out
}

// median returns the median of vs (the mean of the middle two for an even
// count); NaN-free input is assumed.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// procsOf returns the GOMAXPROCS values present for bench, sorted.
func procsOf(m map[medianKey]map[string]float64, bench string) []int {
	var ps []int
	for k := range m {
		if k.Bench == bench && !slices.Contains(ps, k.Procs) {
			ps = append(ps, k.Procs)
		}
	}
	slices.Sort(ps)
	return ps
}

package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

const goTestOutput = `goos: linux
goarch: amd64
pkg: github.com/tenire/loop-operator/worker/pool
cpu: AMD EPYC
BenchmarkDispatch/impl=pool           	  200000	       180 ns/op	      14 B/op	       0 allocs/op
BenchmarkDispatch/impl=pool           	  200000	       200 ns/op	      14 B/op	       0 allocs/op
BenchmarkDispatch/impl=pool           	  200000	       190 ns/op	      14 B/op	       0 allocs/op
BenchmarkDispatch/impl=pool-2         	  200000	       400 ns/op	      14 B/op	       1 allocs/op
BenchmarkDispatch/impl=ants           	  200000	       500 ns/op	       0 B/op	       0 allocs/op
BenchmarkDispatch/impl=ants-2         	  200000	       400 ns/op	       0 B/op	       0 allocs/op
BenchmarkQueueLatency/impl=asynq-2    	    5000	   1925588 ns/op	      1558 p50-us	      3120 p99-us
BenchmarkQueueThroughput/impl=loop-prefetch-2         	    2000	     18676 ns/op	     53544 tasks/s
BenchmarkQueueThroughput/impl=loop-prefetch         	    2000	     18676 ns/op	     50000 tasks/s
BenchmarkOther-2                      	    5000	   1925588 ns/op
PASS
ok  	github.com/tenire/loop-operator/worker/pool	1.044s
`

func TestParseBenchReadsImplSubBenchmarksOnly(t *testing.T) {
	s, err := parseBench(strings.NewReader(goTestOutput))
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 9 {
		t.Fatalf("parsed %d samples, want 9 (the impl= lines): %+v", len(s), s)
	}
	if s[0].Bench != "Dispatch" || s[0].Impl != "pool" || s[0].Procs != 1 || s[0].Values["ns/op"] != 180 {
		t.Errorf("first sample = %+v", s[0])
	}
	if a := s[6]; a.Bench != "QueueLatency" || a.Impl != "asynq" || a.Procs != 2 || a.Values["p99-us"] != 3120 {
		t.Errorf("asynq sample = %+v", a)
	}
	for i, procs := range []int{2, 1} {
		if p := s[7+i]; p.Impl != "loop-prefetch" || p.Procs != procs {
			t.Errorf("a hyphenated impl name at GOMAXPROCS=%d parsed as %+v", procs, p)
		}
	}
}

func TestParseBenchRejectsAMalformedLine(t *testing.T) {
	if _, err := parseBench(strings.NewReader("BenchmarkX/impl=a-2  10  12 ns/op 7\n")); err == nil {
		t.Fatal("an odd value/unit list was accepted")
	}
}

func TestMedianOfOddAndEvenCounts(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {nil, 0}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestFiguresAreRatiosOfMediansAndJudgedAgainstTheirGoals(t *testing.T) {
	s, err := parseBench(strings.NewReader(goTestOutput))
	if err != nil {
		t.Fatal(err)
	}
	m := medians(s)
	if got := procsOf(m, "Dispatch"); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("procsOf = %v, want [1 2]", got)
	}
	sec := &section{Title: "1. Dispatch"}
	f1, err := goFigure(m, "Dispatch", 1, "pool", "ants", "ns/op")
	if err != nil {
		t.Fatal(err)
	}
	f1.GoalMax = 0.9
	sec.add(f1)
	if math.Abs(f1.Ratio-190.0/500) > 1e-9 || !*f1.Met {
		t.Errorf("GOMAXPROCS=1: ratio %v met %v, want 0.38 and met", f1.Ratio, *f1.Met)
	}
	f2, err := goFigure(m, "Dispatch", 2, "pool", "ants", "ns/op")
	if err != nil {
		t.Fatal(err)
	}
	f2.GoalMax = 0.9
	sec.add(f2)
	if f2.Ratio != 1 || *f2.Met {
		t.Errorf("GOMAXPROCS=2: ratio %v met %v, want 1 and missed", f2.Ratio, *f2.Met)
	}
	if sec.missedAt(1) || !sec.missedAt(2) {
		t.Errorf("missedAt(1) = %v, missedAt(2) = %v; want false, true", sec.missedAt(1), sec.missedAt(2))
	}
	if _, err := goFigure(m, "Dispatch", 2, "pool", "pond", "ns/op"); err == nil {
		t.Error("a figure against a missing anchor was made")
	}

	r := &report{Count: 6, Sections: []*section{sec}}
	var out bytes.Buffer
	if err := r.write(&out); err != nil {
		t.Fatal(err)
	}
	doc := out.String()
	for _, want := range []string{"1 of the goals were missed", "| 1. Dispatch | ns/op, GOMAXPROCS=2 | pool 400 | ants 400 | 1.00× | ≤ 0.90× | MISSED |", "0.38×"} {
		if !strings.Contains(doc, want) {
			t.Errorf("the report lacks %q:\n%s", want, doc)
		}
	}
}

func TestARatioThatRoundsOntoItsGoalShowsThreeDecimals(t *testing.T) {
	sec := &section{}
	f := &figure{Ratio: 1.201, GoalMax: 1.2}
	sec.add(f)
	if *f.Met || ratioOf(f) != "1.201×" {
		t.Errorf("1.201 against ≤ 1.2: met %v, shown %s; want missed and 1.201×", *f.Met, ratioOf(f))
	}
	if g := (&figure{Ratio: 0.384, GoalMax: 0.9}); ratioOf(g) != "0.38×" {
		t.Errorf("a ratio far from its goal shows %s, want 0.38×", ratioOf(g))
	}
}

func TestHandWrittenNotesAreCarriedOverMarkedAsWrittenForAnEarlierRun(t *testing.T) {
	if got := carriedNotes([]byte("# Benchmarks\n\nno notes\n")); got != nil {
		t.Errorf("a report without notes carried %q", got)
	}
	if got := carriedNotes([]byte("# Benchmarks\n\n" + notesMarker + "\n\n")); got != nil {
		t.Errorf("empty notes carried as %q", got)
	}
	first := carriedNotes([]byte("# Benchmarks\n\n" + notesMarker + "\n\nThe dispatch missed: contention.\n"))
	for _, want := range []string{notesMarker, carriedNote, "The dispatch missed: contention."} {
		if !strings.Contains(string(first), want) {
			t.Errorf("carried notes %q lack %q", first, want)
		}
	}
	again := carriedNotes(append([]byte("# Benchmarks, a later run\n"), first...))
	if n := strings.Count(string(again), carriedNote); n != 1 {
		t.Errorf("notes carried twice say they are carried %d times: %q", n, again)
	}
	if !strings.Contains(string(again), "The dispatch missed: contention.") {
		t.Errorf("notes carried twice lost their text: %q", again)
	}
}

package main

import (
	"context"
)

// parts lists the report's sections in order; each runs its measurements
// and returns its figures, every one a ratio against an anchor measured in
// the same run.
func parts(o *options) []part {
	size := func(full, quick string) string {
		if o.quick {
			return quick
		}
		return full
	}
	dispatch := goBench{pkg: "./worker/pool", bench: "Dispatch", benchtime: size("2000000x", "20000x"), cpu: "1,2"}
	features := goBench{pkg: "./worker/pool", bench: "Features", benchtime: size("2000000x", "20000x"), cpu: "1,2"}
	footprint := goBench{pkg: "./worker/pool", bench: "Footprint", benchtime: "1x"}
	throughput := goBench{pkg: "./worker/loop", bench: "QueueThroughput", benchtime: size("20000x", "2000x")}
	latency := goBench{pkg: "./worker/loop", bench: "QueueLatency", benchtime: size("2000x", "200x")}

	return []part{
		{"dispatch", "1. Dispatch", func(ctx context.Context, o *options) (*section, error) {
			sec, m, err := runGo(ctx, o, "dispatch", dispatch)
			if err != nil {
				return nil, err
			}
			sec.Title, sec.Intro = "1. Dispatch", introDispatch
			for _, procs := range procsOf(m, "Dispatch") {
				f, err := goFigure(m, "Dispatch", procs, "pool", "ants", "ns/op")
				if err != nil {
					return nil, err
				}
				f.GoalMax = 0.9
				sec.add(f)
				allocs, err := goFigure(m, "Dispatch", procs, "pool", "ants", "allocs/op")
				if err != nil {
					return nil, err
				}
				allocs.Ratio, allocs.Goal, allocs.Met = -1, "0 allocs/op", ptr(allocs.OursV == 0)
				sec.add(allocs)
				for _, anchor := range []string{"pond", "goroutines", "channel"} {
					f, err := goFigure(m, "Dispatch", procs, "pool", anchor, "ns/op")
					if err != nil {
						return nil, err
					}
					if anchor == "channel" {
						f.GoalMax = 1.5 // the floor of a hand-off between goroutines
					}
					sec.add(f)
				}
				if sec.missedAt(procs) {
					if err := sec.profile(ctx, o, dispatch, "pool", procs); err != nil {
						return nil, err
					}
				}
			}
			return sec, nil
		}},
		{"footprint", "2. Footprint", func(ctx context.Context, o *options) (*section, error) {
			sec, m, err := runGo(ctx, o, "footprint", footprint)
			if err != nil {
				return nil, err
			}
			sec.Title, sec.Intro = "2. Footprint", introFootprint
			for _, procs := range procsOf(m, "Footprint") {
				mem, err := goFigure(m, "Footprint", procs, "pool", "goroutines", "B/op")
				if err != nil {
					return nil, err
				}
				mem.GoalMax = 0.25
				sec.add(mem)
				wall, err := goFigure(m, "Footprint", procs, "pool", "goroutines", "ns/op")
				if err != nil {
					return nil, err
				}
				wall.GoalMax = 1.1
				sec.add(wall)
				for _, unit := range []string{"B/op", "ns/op"} {
					f, err := goFigure(m, "Footprint", procs, "pool", "ants", unit)
					if err != nil {
						return nil, err
					}
					sec.add(f)
				}
				if sec.missedAt(procs) {
					if err := sec.profile(ctx, o, footprint, "pool", procs); err != nil {
						return nil, err
					}
				}
			}
			return sec, nil
		}},
		{"features", "3. Cost of the features", func(ctx context.Context, o *options) (*section, error) {
			sec, m, err := runGo(ctx, o, "features", features)
			if err != nil {
				return nil, err
			}
			sec.Title, sec.Intro = "3. Cost of the features", introFeatures
			for _, procs := range procsOf(m, "Features") {
				f, err := goFigure(m, "Features", procs, "features", "fifo", "ns/op")
				if err != nil {
					return nil, err
				}
				f.GoalMax = 1.2
				sec.add(f)
				if sec.missedAt(procs) {
					if err := sec.profile(ctx, o, features, "features", procs); err != nil {
						return nil, err
					}
				}
			}
			return sec, nil
		}},
		{"queue", "4. Queue path", func(ctx context.Context, o *options) (*section, error) {
			if err := ensureRedis(ctx, o); err != nil {
				return nil, err
			}
			sec, m, err := runGo(ctx, o, "queue-throughput", throughput)
			if err != nil {
				return nil, err
			}
			lsec, lm, err := runGo(ctx, o, "queue-latency", latency)
			if err != nil {
				return nil, err
			}
			sec.Title, sec.Intro = "4. Queue path", introQueue
			sec.Commands = append(sec.Commands, lsec.Commands...)
			sec.Benchstat += "\n\n" + lsec.Benchstat
			for _, procs := range procsOf(m, "QueueThroughput") {
				plain, err := goFigure(m, "QueueThroughput", procs, "loop", "plain", "tasks/s")
				if err != nil {
					return nil, err
				}
				plain.GoalMin = 0.8
				sec.add(plain)
				asynq, err := goFigure(m, "QueueThroughput", procs, "loop", "asynq", "tasks/s")
				if err != nil {
					return nil, err
				}
				asynq.GoalMin = 2
				sec.add(asynq)
				for _, variant := range []string{"loop-off", "loop-prefetch"} {
					f, err := goFigure(m, "QueueThroughput", procs, variant, "plain", "tasks/s")
					if err != nil {
						return nil, err
					}
					sec.add(f)
				}
				if sec.missedAt(procs) {
					if err := sec.profile(ctx, o, throughput, "loop", procs); err != nil {
						return nil, err
					}
				}
			}
			for _, procs := range procsOf(lm, "QueueLatency") {
				for _, anchor := range []string{"plain", "asynq"} {
					for _, unit := range []string{"p50-us", "p99-us"} {
						f, err := goFigure(lm, "QueueLatency", procs, "loop", anchor, unit)
						if err != nil {
							return nil, err
						}
						f.What = "enqueue-to-start " + f.What
						sec.add(f)
					}
				}
			}
			return sec, nil
		}},
		{"operator", "5. Operator", runOperator},
		{"drain", "6. Drain", runDrain},
		{"autoscale", "7. Autoscaling", runAutoscale},
		{"many", "8. Many loops", runMany},
	}
}

func ptr[T any](v T) *T { return &v }

// missedAt reports whether a figure with a goal at procs missed it.
func (s *section) missedAt(procs int) bool {
	for _, f := range s.Figures {
		if f.Procs == procs && f.Met != nil && !*f.Met {
			return true
		}
	}
	return false
}

// profile adds the CPU profile of impl in g at procs to the section.
func (s *section) profile(ctx context.Context, o *options, g goBench, impl string, procs int) error {
	top, err := profileMiss(ctx, o, g, impl, procs)
	if err != nil {
		return err
	}
	s.Profiles = append(s.Profiles, top)
	return nil
}

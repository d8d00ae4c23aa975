package breaker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tenire/loop-operator/worker/breaker"
)

// clock is a hand-moved clock.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// step is one action on the breaker of kind "k", and what to expect.
type step struct {
	do        string // "fail", "ok", "ignore", "allow", "deny", "wait"
	d         time.Duration
	wantState string // when not empty, the state after the step
}

func TestBreaker(t *testing.T) {
	const cooldown = time.Minute
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "fewer consecutive failures than the threshold keep it closed",
			steps: []step{
				{do: "fail", wantState: "Closed"},
				{do: "fail", wantState: "Closed"},
				{do: "allow", wantState: "Closed"},
			},
		},
		{
			name: "a success resets the count of consecutive failures",
			steps: []step{
				{do: "fail"}, {do: "fail"}, {do: "ok"}, {do: "fail"}, {do: "fail", wantState: "Closed"},
				{do: "allow", wantState: "Closed"},
			},
		},
		{
			name: "the threshold of consecutive failures opens it and it refuses for the whole cooldown",
			steps: []step{
				{do: "fail"}, {do: "fail"}, {do: "fail", wantState: "Open"},
				{do: "deny", d: cooldown, wantState: "Open"},
				{do: "wait", d: cooldown - time.Second},
				{do: "deny", d: time.Second, wantState: "Open"},
			},
		},
		{
			name: "after the cooldown one probe goes through half-open and a second waits",
			steps: []step{
				{do: "fail"}, {do: "fail"}, {do: "fail"},
				{do: "wait", d: cooldown},
				{do: "allow", wantState: "HalfOpen"},
				{do: "deny", d: cooldown / 10, wantState: "HalfOpen"},
			},
		},
		{
			name: "a successful probe closes it",
			steps: []step{
				{do: "fail"}, {do: "fail"}, {do: "fail"},
				{do: "wait", d: cooldown},
				{do: "allow"}, {do: "ok", wantState: "Closed"},
				{do: "allow"}, {do: "allow", wantState: "Closed"},
			},
		},
		{
			name: "a failed probe opens it for another full cooldown",
			steps: []step{
				{do: "fail"}, {do: "fail"}, {do: "fail"},
				{do: "wait", d: cooldown + 5*time.Second},
				{do: "allow"}, {do: "fail", wantState: "Open"},
				{do: "deny", d: cooldown},
			},
		},
		{
			name: "a probe handed back without a verdict frees its slot for the next probe",
			steps: []step{
				{do: "fail"}, {do: "fail"}, {do: "fail"},
				{do: "wait", d: cooldown},
				{do: "allow"}, {do: "ignore"},
				{do: "allow", wantState: "HalfOpen"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			var changes []string
			s := breaker.New(breaker.Options{
				FailureThreshold: 3,
				Cooldown:         cooldown,
				Now:              clk.Now,
				OnChange: func(kind string, from, to breaker.State) {
					changes = append(changes, fmt.Sprintf("%s:%s->%s", kind, from, to))
				},
			})
			for i, st := range tt.steps {
				switch st.do {
				case "fail":
					s.Failure("k")
				case "ok":
					s.Success("k")
				case "ignore":
					s.Ignore("k")
				case "wait":
					clk.now = clk.now.Add(st.d)
				case "allow":
					if ok, wait := s.Allow("k"); !ok {
						t.Fatalf("step %d: Allow refused (wait %s), want allowed", i, wait)
					}
				case "deny":
					ok, wait := s.Allow("k")
					if ok || wait != st.d {
						t.Fatalf("step %d: Allow = %v, wait %s; want refused with wait %s", i, ok, wait, st.d)
					}
				}
				if got := s.State("k").String(); st.wantState != "" && got != st.wantState {
					t.Fatalf("step %d (%s): state %s, want %s", i, st.do, got, st.wantState)
				}
			}
			if s.State("other") != breaker.Closed {
				t.Error("another kind was affected")
			}
			t.Logf("changes: %v", changes)
		})
	}
}

func TestDisabledBreakerAlwaysAllows(t *testing.T) {
	s := breaker.New(breaker.Options{})
	for range 100 {
		s.Failure("k")
	}
	if ok, _ := s.Allow("k"); !ok {
		t.Error("a breaker with FailureThreshold 0 refused a task")
	}
}

func TestOnChangeReportsEveryTransition(t *testing.T) {
	clk := &clock{now: time.Unix(0, 0)}
	var changes []string
	s := breaker.New(breaker.Options{FailureThreshold: 1, Cooldown: time.Second, Now: clk.Now,
		OnChange: func(kind string, from, to breaker.State) {
			changes = append(changes, fmt.Sprintf("%s->%s", from, to))
		}})
	s.Failure("k")
	clk.now = clk.now.Add(time.Second)
	s.Allow("k")
	s.Failure("k")
	clk.now = clk.now.Add(time.Second)
	s.Allow("k")
	s.Success("k")
	want := "[Closed->Open Open->HalfOpen HalfOpen->Open Open->HalfOpen HalfOpen->Closed]"
	if got := fmt.Sprint(changes); got != want {
		t.Errorf("changes = %s, want %s", got, want)
	}
}

// TestTheCleanFastPathStillSeesEveryFailure checks the lock-free path of
// Allow and Success: a set whose kinds never failed takes no lock, and a
// single failure anywhere puts every call back on the locked path until
// the failing kind is clean again.
func TestTheCleanFastPathStillSeesEveryFailure(t *testing.T) {
	s := breaker.New(breaker.Options{FailureThreshold: 2, Cooldown: time.Hour})
	for range 3 {
		if ok, _ := s.Allow("a"); !ok {
			t.Fatal("a clean set refused a task")
		}
		s.Success("a")
	}
	if n := len(s.States()); n != 0 {
		t.Errorf("a set whose tasks all succeeded lists %d kinds", n)
	}
	s.Failure("b")
	s.Success("b") // resets b's count: b is clean again
	s.Failure("b")
	s.Failure("b")
	if got := s.State("b"); got != breaker.Open {
		t.Fatalf("b after two consecutive failures is %s, want Open", got)
	}
	if ok, _ := s.Allow("b"); ok {
		t.Error("an open breaker let a task through")
	}
	if ok, _ := s.Allow("a"); !ok {
		t.Error("a's breaker refused while only b is open")
	}
}

package breaker_test

import (
	"fmt"
	"time"

	"github.com/tenire/loop-operator/worker/breaker"
)

func Example() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := breaker.New(breaker.Options{
		FailureThreshold: 2,
		Cooldown:         time.Minute,
		Now:              func() time.Time { return now },
	})
	b.Failure("email")
	b.Failure("email")
	ok, wait := b.Allow("email")
	fmt.Println(b.State("email"), ok, wait)

	now = now.Add(time.Minute)
	ok, _ = b.Allow("email") // the probe
	fmt.Println(b.State("email"), ok)
	b.Success("email")
	fmt.Println(b.State("email"))
	// Output:
	// Open false 1m0s
	// HalfOpen true
	// Closed
}

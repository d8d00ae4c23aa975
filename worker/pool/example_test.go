package pool_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/tenire/loop-operator/worker/pool"
)

func Example() {
	results := make(chan string, 2)
	p, err := pool.New(pool.Options{
		MaxWorkers: 4,
		Classes:    []pool.Class{{Name: "high", Weight: 3}, {Name: "low", Weight: 1}},
		KindLimits: map[string]int{"email": 1},
	}, func(ctx context.Context, s string) error {
		if s == "" {
			return fmt.Errorf("empty task")
		}
		results <- strings.ToUpper(s)
		return nil
	}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	const high = 0 // the index of "high" in Options.Classes
	if err := p.TrySubmit("email", high, "hello"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-results)
	p.Stop() // refuse new tasks; the running ones go on
	if err := p.Wait(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output: HELLO
}

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
	high, _ := p.Class("high")
	_ = p.Submit(context.Background(), "email", high, "hello")
	fmt.Println(<-results)
	p.Close()
	// Output: HELLO
}

package settings_test

import (
	"fmt"

	"github.com/tenire/loop-operator/worker/settings"
)

// Example turns the operator's LOOP_SETTINGS document into a loop
// configuration; a worker then sets Logger, Pod and handlers and runs it.
func Example() {
	env := map[string]string{"LOOP_SETTINGS": `{
	  "name": "mail", "namespace": "shop",
	  "loop": {"pool": {"maxWorkers": 8}, "priorities": [{"name": "high", "weight": 3}, {"name": "low"}]},
	  "queue": {"nats": {"url": "nats://nats.nats:4222", "ackWait": "1m"}},
	  "stream": "LOOP_shop_mail", "subjectPrefix": "loops.shop.mail", "drainTimeout": "2m"
	}`}
	s, ok, err := settings.FromEnvironment(func(k string) string { return env[k] })
	if err != nil || !ok {
		fmt.Println(ok, err)
		return
	}
	cfg, err := settings.Config(s)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Name, cfg.NATSURL, cfg.Stream, cfg.MaxWorkers, cfg.Priorities, cfg.AckWait, cfg.DrainTimeout)
	// Output: shop/mail nats://nats.nats:4222 LOOP_shop_mail 8 [{high 3} {low 0}] 1m0s 2m0s
}

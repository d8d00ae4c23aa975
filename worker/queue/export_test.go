package queue

import "time"

// SetDelayedMoveMargin changes how soon a delayed task of a retiring
// priority may be due and still move, for a test, and returns a function
// that puts it back.
func SetDelayedMoveMargin(d time.Duration) (restore func()) {
	old := delayedMoveMargin
	delayedMoveMargin = d
	return func() { delayedMoveMargin = old }
}

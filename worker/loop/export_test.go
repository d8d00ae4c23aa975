package loop

import "time"

// SetAbortGrace shortens the wait for handlers that ignore cancellation
// and returns a function that restores it.
func SetAbortGrace(d time.Duration) (restore func()) {
	old := abortGrace
	abortGrace = d
	return func() { abortGrace = old }
}

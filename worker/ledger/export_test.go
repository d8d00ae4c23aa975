package ledger

import "time"

// SetAskTimeout shortens the bound of one request to JetStream for a test
// and returns a function that puts it back.
func SetAskTimeout(d time.Duration) (restore func()) {
	old := askTimeout
	askTimeout = d
	return func() { askTimeout = old }
}

// Unanswered exposes unanswered to the package's tests.
var Unanswered = unanswered

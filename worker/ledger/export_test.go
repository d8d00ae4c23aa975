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

// SetWatch paces the ledger's watch of its consumers for a test and
// returns a function that puts the pace back.
func SetWatch(every, stall time.Duration) (restore func()) {
	oldEvery, oldStall := checkEvery, stallAfter
	checkEvery, stallAfter = every, stall
	return func() { checkEvery, stallAfter = oldEvery, oldStall }
}

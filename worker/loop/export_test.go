package loop

import (
	"net/http"
)

// AdminHandler returns the admin server's handler without running the
// loop.
func (l *Loop) AdminHandler() http.Handler { return l.adminHandler() }

// AdminAddr returns the admin server's listening address once Run has
// started it ("" when disabled or not yet listening).
func (l *Loop) AdminAddr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.adminAddr
}

// Prefetch returns how many tasks the loop may hold beyond its pool now.
func (l *Loop) Prefetch() int {
	if l.pool == nil {
		return 0
	}
	return l.pool.Backlog()
}

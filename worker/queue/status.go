package queue

// StatusSubject returns the core NATS subject on which a loop's workers
// announce their status (the JSON of loop.Announcement) every few seconds,
// so that a client that reaches the queue can see every worker's in-flight
// tasks without reaching each pod. Nothing is stored.
func (n Names) StatusSubject() string { return n.SubjectPrefix + ".workers" }

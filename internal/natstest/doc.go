// Package natstest runs a real NATS server with JetStream inside the test
// process, on a random port with its store in a temporary folder, and can
// restart it on the same port and store. Test infrastructure only.
package natstest

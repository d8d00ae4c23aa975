package queue_test

import (
	"bytes"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenire/loop-operator/worker/queue"
)

// envelopeMsg is a fetched message as NewDelivery reads it: headers, body
// and the server's metadata. Acks are not used.
type envelopeMsg struct {
	jetstream.Msg
	h    nats.Header
	data []byte
	md   jetstream.MsgMetadata
}

func (m *envelopeMsg) Headers() nats.Header                      { return m.h }
func (m *envelopeMsg) Data() []byte                              { return m.data }
func (m *envelopeMsg) Metadata() (*jetstream.MsgMetadata, error) { return &m.md, nil }

// FuzzNewDelivery feeds NewDelivery header blocks as they come off the
// wire. Whatever the headers say, a delivery has an id, the kind and id
// are the headers' first values, and the counts are the server's.
func FuzzNewDelivery(f *testing.F) {
	f.Add([]byte("NATS/1.0\r\nLoop-Kind: email\r\nLoop-Task-Id: t-1\r\n\r\n"), []byte(`{"to":"a@b"}`), uint64(7), uint64(1))
	f.Add([]byte("NATS/1.0\r\nLoop-Kind: sleep\r\n\r\n"), []byte(`{"ms":1}`), uint64(42), uint64(3))
	f.Add([]byte("NATS/1.0\r\nLoop-Kind: a\r\nLoop-Kind: b\r\nLoop-Task-Id: x y/z.é\r\n\r\n"), []byte{}, uint64(1), uint64(2))
	f.Add([]byte("NATS/1.0\r\nloop-kind: lower\r\n\r\n"), []byte(nil), uint64(0), uint64(0))
	f.Add([]byte("NATS/1.0 503\r\n\r\n"), []byte("x"), uint64(9), uint64(1))
	f.Add([]byte("garbage"), []byte("x"), uint64(9), uint64(1))
	f.Add([]byte("NATS/1.0\r\nLoop-Kind: k\r\nLoop-Deadline: 2026-01-02T03:04:05.123456789Z\r\n\r\n"), []byte("x"), uint64(1), uint64(1))
	f.Add([]byte("NATS/1.0\r\nLoop-Kind: k\r\nLoop-Deadline: tomorrow\r\n\r\n"), []byte("x"), uint64(1), uint64(1))
	f.Fuzz(func(t *testing.T, raw, data []byte, seq, delivered uint64) {
		h, err := nats.DecodeHeadersMsg(raw)
		if err != nil {
			return // nats.go refuses it before NewDelivery sees it
		}
		m := &envelopeMsg{h: h, data: data, md: jetstream.MsgMetadata{NumDelivered: delivered, Sequence: jetstream.SequencePair{Stream: seq}}}
		d, err := queue.NewDelivery(m, 0, "default")
		if err != nil {
			t.Fatalf("NewDelivery = %v", err)
		}
		if d.Kind != h.Get(queue.HeaderKind) {
			t.Errorf("kind %q, want the header's %q", d.Kind, h.Get(queue.HeaderKind))
		}
		switch id := h.Get(queue.HeaderTaskID); {
		case id != "" && d.ID != id:
			t.Errorf("id %q, want the header's %q", d.ID, id)
		case id == "" && d.ID != "seq-"+strconv.FormatUint(seq, 10):
			t.Errorf("id %q of a task without one, want seq-%d", d.ID, seq)
		}
		if d.ID == "" {
			t.Error("a delivery without an id")
		}
		if d.Attempt != delivered || d.Delivered != delivered || d.StreamSeq != seq {
			t.Errorf("attempt %d, delivered %d, seq %d; want the metadata's %d, %d", d.Attempt, d.Delivered, d.StreamSeq, delivered, seq)
		}
		if !bytes.Equal(d.Payload(), data) {
			t.Errorf("payload %q, want %q", d.Payload(), data)
		}
		// A deadline header, readable or not, gives a deadline; an
		// unreadable one has passed.
		switch v := h.Get(queue.HeaderDeadline); {
		case v == "" && !d.Deadline.IsZero():
			t.Errorf("deadline %s without the header", d.Deadline)
		case v != "" && d.Deadline.IsZero():
			t.Errorf("no deadline from the header %q", v)
		case v != "":
			if _, err := time.Parse(time.RFC3339Nano, v); err != nil && !d.Expired(time.Unix(1, 0)) {
				t.Errorf("an unreadable deadline %q has not expired", v)
			}
		}
	})
}

// FuzzDeliveryCounts decodes what the checkpoint bucket might hold: a
// value is accepted only in the form MarshalText writes, and crashes never
// exceed the earlier deliveries.
func FuzzDeliveryCounts(f *testing.F) {
	f.Add([]byte("v1 0 0"), uint64(1))
	f.Add([]byte("v1 2 5"), uint64(10))
	f.Add([]byte("v1 18446744073709551615 1"), uint64(3))
	f.Add([]byte("v1 01 2"), uint64(4))
	f.Add([]byte("v1 1  2"), uint64(4))
	f.Add([]byte("v2 1 2"), uint64(4))
	f.Add([]byte("v1 -1 2"), uint64(4))
	f.Add([]byte(""), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, delivered uint64) {
		var c queue.DeliveryCounts
		if err := c.UnmarshalText(b); err != nil {
			if !errors.Is(err, queue.ErrBadCounts) {
				t.Fatalf("UnmarshalText = %v, want ErrBadCounts", err)
			}
			return
		}
		out, err := c.MarshalText()
		if err != nil || !bytes.Equal(out, b) {
			t.Errorf("MarshalText = %q, %v; want the accepted input %q", out, err, b)
		}
		if n := c.Crashes(delivered); delivered > 0 && n > delivered-1 || delivered == 0 && n != 0 {
			t.Errorf("Crashes(%d) = %d for %+v", delivered, n, c)
		}
	})
}

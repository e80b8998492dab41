package queue

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// A receipt handle is the message's JetStream ack subject with the queue's
// id, signed with the service's key: opaque to callers, usable by any of
// them, and refused for another queue (or a queue of the same name made
// again) or when altered.

func (s *Service) receipt(st *state, ack string) string {
	payload := st.rec.ID + " " + ack
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(s.sign(payload))
}

func (s *Service) sign(payload string) []byte {
	m := hmac.New(sha256.New, s.cfg.Key)
	m.Write([]byte(payload))
	return m.Sum(nil)[:18]
}

// openReceipt checks a receipt handle and that its message is still in
// the queue; it returns the message's stream sequence and ack subject.
func (s *Service) openReceipt(ctx context.Context, st *state, handle string) (uint64, string, error) {
	invalid := errorf(ErrReceiptInvalid, "The input receipt handle %q is not a valid receipt handle.", handle)
	p, sig, ok := strings.Cut(handle, ".")
	if !ok {
		return 0, "", invalid
	}
	raw, err1 := base64.RawURLEncoding.DecodeString(p)
	mac, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, s.sign(string(raw))) {
		return 0, "", invalid
	}
	id, ack, _ := strings.Cut(string(raw), " ")
	if id != st.rec.ID {
		return 0, "", errorf(ErrReceiptInvalid, "The input receipt handle is not a valid receipt handle for the queue %s.", st.rec.Name)
	}
	meta, ok := parseAck(ack)
	seq := meta.seq
	if !ok || meta.stream != streamName(id) {
		return 0, "", invalid
	}
	js, err := s.cfg.JetStream.Stream(ctx, meta.stream)
	if err != nil {
		return 0, "", err
	}
	// Deleted (acknowledged), purged or expired: the work queue no longer
	// holds it.
	if _, err := js.GetMsg(ctx, seq); errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, "", errorf(ErrReceiptInvalid, "The receipt handle has expired: its message was deleted.")
	} else if err != nil {
		return 0, "", err
	}
	return seq, ack, nil
}

// ackInfo is what a delivered message's ack subject tells.
type ackInfo struct {
	stream    string
	delivered int    // JetStream's delivery count: the receive count
	seq       uint64 // the stream sequence
}

// parseAck reads an ack subject:
// $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>, or
// the form with a domain and an account hash before the stream.
func parseAck(ack string) (ackInfo, bool) {
	t := strings.Split(ack, ".")
	if len(t) < 9 || t[0] != "$JS" || t[1] != "ACK" {
		return ackInfo{}, false
	}
	i := 2
	if len(t) >= 11 {
		i = 4
	}
	dc, err1 := strconv.Atoi(t[i+2])
	seq, err2 := strconv.ParseUint(t[i+3], 10, 64)
	return ackInfo{stream: t[i], delivered: dc, seq: seq}, err1 == nil && err2 == nil
}

package queue

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/broker"
)

// The headers a message carries in JetStream besides its body.
const (
	hdrID    = "Hearth-Id"
	hdrSent  = "Hearth-Sent"  // ms since the epoch
	hdrAttrs = "Hearth-Attrs" // the message attributes, JSON in base64
)

// ErrMissingParameter is a required parameter left out.
var ErrMissingParameter = &Error{Code: "MissingParameter"}

// Send stores a message; once it returns, the message is in JetStream's
// store.
func (s *Service) Send(ctx context.Context, name string, m Message) (Sent, error) {
	st, err := s.state(ctx, name)
	if err != nil {
		return Sent{}, err
	}
	a := st.settings()
	if err := checkMessage(m, a.MaximumMessageSize); err != nil {
		return Sent{}, err
	}
	delay := m.DelaySeconds
	if delay == 0 {
		delay = a.DelaySeconds
	}
	if delay < 0 || delay > int(MaxDelay/time.Second) {
		return Sent{}, errorf(ErrInvalidParameter, "Value %d for parameter DelaySeconds is invalid. Reason: must be between 0 and %d, if provided.", delay, int(MaxDelay/time.Second))
	}
	id := uuid.NewString()
	now := s.now()
	msg := nats.NewMsg(readySubject(st.rec.ID))
	msg.Data = []byte(m.Body)
	msg.Header.Set(hdrID, id)
	msg.Header.Set(hdrSent, strconv.FormatInt(now.UnixMilli(), 10))
	if len(m.Attributes) > 0 {
		enc, _ := json.Marshal(m.Attributes)
		msg.Header.Set(hdrAttrs, base64.StdEncoding.EncodeToString(enc))
	}
	if delay > 0 {
		// The server publishes it to the ready subject at its time (and
		// drops the schedule), durably: a restart in between keeps it.
		msg.Subject = delaySubject(st.rec.ID, strings.ReplaceAll(id, "-", ""))
		msg.Header.Set("Nats-Schedule", "@at "+now.Add(time.Duration(delay)*time.Second).UTC().Format(time.RFC3339Nano))
		msg.Header.Set("Nats-Schedule-Target", readySubject(st.rec.ID))
	}
	if _, err := broker.Publish(ctx, s.cfg.JetStream, msg); err != nil {
		return Sent{}, fmt.Errorf("queue %s: send: %w", name, err)
	}
	return Sent{MessageID: id, MD5OfBody: MD5OfBody(m.Body)}, nil
}

// checkMessage checks a message as SQS does: a body of valid characters,
// at most 10 attributes of valid names and types, and at most max bytes
// in all.
func checkMessage(m Message, max int) error {
	if m.Body == "" {
		return errorf(ErrMissingParameter, "The request must contain the parameter MessageBody.")
	}
	if err := checkChars(m.Body); err != nil {
		return err
	}
	size := len(m.Body)
	if len(m.Attributes) > MaxMessageAttributes {
		return errorf(ErrInvalidParameter, "Number of message attributes [%d] exceeds the allowed maximum [%d].", len(m.Attributes), MaxMessageAttributes)
	}
	for n, a := range m.Attributes {
		if err := checkAttributeName(n); err != nil {
			return err
		}
		base, _, _ := strings.Cut(a.DataType, ".")
		switch base {
		case "String", "Number":
			if a.StringValue == "" {
				return errorf(ErrInvalidParameter, "Message (user) attribute '%s' must contain a non-empty value of type '%s'.", n, base)
			}
			if err := checkChars(a.StringValue); err != nil {
				return err
			}
			if base == "Number" {
				if _, err := strconv.ParseFloat(a.StringValue, 64); err != nil {
					return errorf(ErrInvalidParameter, "Can't cast the value of message (user) attribute '%s' to a number.", n)
				}
			}
		case "Binary":
			if len(a.BinaryValue) == 0 {
				return errorf(ErrInvalidParameter, "Message (user) attribute '%s' must contain a non-empty value of type 'Binary'.", n)
			}
		default:
			return errorf(ErrInvalidParameter, "The type of message (user) attribute '%s' is invalid. You must use only the following supported type prefixes: Binary, Number, String.", n)
		}
		size += len(n) + len(a.DataType) + len(a.StringValue) + len(a.BinaryValue)
	}
	if size > max {
		return errorf(ErrInvalidParameter, "One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", max)
	}
	return nil
}

// checkChars refuses what SQS refuses in a message: invalid UTF-8 and the
// characters outside #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD |
// #x10000 to #x10FFFF.
func checkChars(v string) error {
	for i, r := range v {
		ok := r == 0x9 || r == 0xA || r == 0xD || (r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(v[i:]); n == 1 {
				ok = false
			}
		}
		if !ok {
			return errorf(ErrInvalidMessage, "Invalid binary character '#x%X' was found in the message body, the set of allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF", r)
		}
	}
	return nil
}

// checkAttributeName checks a message attribute's name as SQS does.
func checkAttributeName(n string) error {
	bad := n == "" || len(n) > maxAttributeNameBytes || strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".") ||
		strings.Contains(n, "..") || strings.HasPrefix(strings.ToLower(n), "aws.") || strings.HasPrefix(strings.ToLower(n), "amazon.")
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			bad = true
		}
	}
	if bad {
		return errorf(ErrInvalidParameter, "Message (user) attribute name '%s' is invalid: use up to %d of A-Z, a-z, 0-9, '_', '-' and '.', not starting or ending with '.', no '..', and no AWS. or Amazon. prefix.", n, maxAttributeNameBytes)
	}
	return nil
}

// Receive hands out up to max (1–10) visible messages, hidden then for
// visibility (0 takes the queue's VisibilityTimeout; a negative one makes
// them visible again at once). With none visible it waits up to wait for
// one (a negative wait takes the queue's ReceiveMessageWaitTimeSeconds),
// woken as soon as one arrives.
func (s *Service) Receive(ctx context.Context, name string, maxN int, wait, visibility time.Duration) ([]Received, error) {
	st, err := s.state(ctx, name)
	if err != nil {
		return nil, err
	}
	a := st.settings()
	if maxN < 1 || maxN > MaxBatch {
		return nil, errorf(ErrInvalidParameter, "Value %d for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and %d, if provided.", maxN, MaxBatch)
	}
	if wait < 0 {
		wait = time.Duration(a.ReceiveMessageWaitTimeSeconds) * time.Second
	}
	if wait > MaxWait {
		return nil, errorf(ErrInvalidParameter, "Value %s for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= %d, if provided.", wait, int(MaxWait/time.Second))
	}
	if visibility > MaxVisibility {
		return nil, errorf(ErrInvalidParameter, "Value %s for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= %d, if provided.", visibility, int(MaxVisibility/time.Second))
	}
	deadline := s.now().Add(wait)
	var out []Received
	for {
		// One pull request that the server answers as soon as it has
		// messages (a send, a delay's end, a visibility's end), or at its
		// expiry. A short poll waits a little too: the consumer learns of
		// a message just stored a moment after its send returned.
		left := max(deadline.Sub(s.now()), minPoll)
		msgs, err := s.pull(ctx, st, maxN-len(out), left)
		if err != nil {
			return out, fmt.Errorf("queue %s: receive: %w", name, err)
		}
		out = append(out, s.deliver(ctx, st, a, msgs, visibility)...)
		if len(out) > 0 || ctx.Err() != nil || !s.now().Before(deadline) {
			return out, nil
		}
	}
}

// minPoll is the shortest pull request.
const minPoll = 50 * time.Millisecond

// pull asks the queue's consumer for up to batch messages, waiting up to
// expires for the first: a pull request with no_wait and an expiry ends
// as soon as it delivered what the queue had.
func (s *Service) pull(ctx context.Context, st *state, batch int, expires time.Duration) ([]*nats.Msg, error) {
	nc := s.cfg.Conn
	inbox := nc.NewInbox()
	ch := make(chan *nats.Msg, batch+8)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	req, _ := json.Marshal(struct {
		Batch   int   `json:"batch"`
		Expires int64 `json:"expires"`
		NoWait  bool  `json:"no_wait"`
	}{batch, expires.Nanoseconds(), true})
	if err := nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+streamName(st.rec.ID)+"."+consumerName, inbox, req); err != nil {
		return nil, err
	}
	// The server ends the request with a status; this bounds the wait if
	// that status is lost.
	timer := time.NewTimer(expires + 5*time.Second)
	defer timer.Stop()
	var out []*nats.Msg
	for len(out) < batch {
		select {
		case m := <-ch:
			if status := m.Header.Get("Status"); status != "" && len(m.Data) == 0 {
				if status == "408" && m.Header.Get("Description") == "Requests Pending" {
					// Other receivers wait for the few messages there
					// are: not a spin.
					time.Sleep(minPoll)
				}
				return out, nil
			}
			out = append(out, m)
		case <-ctx.Done():
			return out, nil
		case <-timer.C:
			return out, nil
		}
	}
	return out, nil
}

// deliver makes received messages of the delivered ones: those received
// too often go to the dead-letter queue instead, and each is given its
// visibility.
func (s *Service) deliver(ctx context.Context, st *state, a Attributes, msgs []*nats.Msg, visibility time.Duration) []Received {
	var out []Received
	now := s.now()
	for _, m := range msgs {
		meta, ok := parseAck(m.Reply)
		if !ok {
			s.log.Warn("a message without metadata", "queue", st.rec.Name, "reply", m.Reply)
			continue
		}
		count := meta.delivered
		if p := a.RedrivePolicy; p != nil && count > p.MaxReceiveCount {
			if err := s.redrive(ctx, st, p, m, meta); err != nil {
				s.log.Warn("moving a message to its dead-letter queue", "queue", st.rec.Name, "err", err)
			} else {
				continue
			}
		}
		hidden := time.Duration(a.VisibilityTimeout) * time.Second
		var err error
		switch {
		case visibility < 0:
			hidden = 0
			err = s.cfg.Conn.Publish(m.Reply, []byte("-NAK"))
		case visibility > 0 && visibility != hidden:
			hidden = visibility
			err = s.cfg.Conn.Publish(m.Reply, nakDelay(visibility))
		}
		if err != nil {
			s.log.Warn("setting a message's visibility", "queue", st.rec.Name, "err", err)
		}
		st.mu.Lock()
		f, ok := st.flight[meta.seq]
		if !ok {
			f.first = now
		}
		f.visibleAt = now.Add(hidden)
		st.flight[meta.seq] = f
		st.mu.Unlock()
		r := Received{
			MessageID:     m.Header.Get(hdrID),
			ReceiptHandle: s.receipt(st, m.Reply),
			Body:          string(m.Data),
			MD5OfBody:     MD5OfBody(string(m.Data)),
			Attributes: map[string]string{
				"ApproximateReceiveCount":          strconv.Itoa(count),
				"SentTimestamp":                    m.Header.Get(hdrSent),
				"ApproximateFirstReceiveTimestamp": strconv.FormatInt(f.first.UnixMilli(), 10),
				"SenderId":                         AccountID,
			},
		}
		if enc := m.Header.Get(hdrAttrs); enc != "" {
			raw, err := base64.StdEncoding.DecodeString(enc)
			if err == nil {
				err = json.Unmarshal(raw, &r.MessageAttributes)
			}
			if err != nil {
				s.log.Warn("a message's attributes", "queue", st.rec.Name, "err", err)
			}
		}
		out = append(out, r)
	}
	return out
}

// redrive moves a message to the dead-letter queue: stored there first,
// then acknowledged here (a crash in between leaves it in both: at least
// once).
func (s *Service) redrive(ctx context.Context, st *state, p *RedrivePolicy, m *nats.Msg, meta ackInfo) error {
	name, err := s.nameOf(ctx, p.DeadLetterTargetArn)
	if err != nil {
		return err
	}
	dlq, err := s.state(ctx, name)
	if err != nil {
		return err
	}
	moved := nats.NewMsg(readySubject(dlq.rec.ID))
	moved.Data = m.Data
	for _, h := range []string{hdrID, hdrSent, hdrAttrs} {
		if v := m.Header.Get(h); v != "" {
			moved.Header.Set(h, v)
		}
	}
	if _, err := broker.Publish(ctx, s.cfg.JetStream, moved); err != nil {
		return err
	}
	if _, err := s.cfg.Conn.RequestWithContext(ctx, m.Reply, []byte("+ACK")); err != nil {
		return err
	}
	st.mu.Lock()
	delete(st.flight, meta.seq)
	st.mu.Unlock()
	s.log.Info("message moved to its dead-letter queue", "queue", st.rec.Name, "dlq", name, "id", m.Header.Get(hdrID), "receives", meta.delivered-1)
	return nil
}

// Delete deletes a received message.
func (s *Service) Delete(ctx context.Context, name, receiptHandle string) error {
	st, err := s.state(ctx, name)
	if err != nil {
		return err
	}
	seq, ack, err := s.openReceipt(ctx, st, receiptHandle)
	if err != nil {
		return err
	}
	if _, err := s.cfg.Conn.RequestWithContext(ctx, ack, []byte("+ACK")); err != nil {
		return fmt.Errorf("queue %s: delete: %w", name, err)
	}
	st.mu.Lock()
	delete(st.flight, seq)
	st.mu.Unlock()
	return nil
}

// ChangeVisibility makes a received message visible again after d from
// now (0: at once), up to 12 hours.
func (s *Service) ChangeVisibility(ctx context.Context, name, receiptHandle string, d time.Duration) error {
	st, err := s.state(ctx, name)
	if err != nil {
		return err
	}
	if d < 0 || d > MaxVisibility {
		return errorf(ErrInvalidParameter, "Value %s for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= %d, if provided.", d, int(MaxVisibility/time.Second))
	}
	seq, ack, err := s.openReceipt(ctx, st, receiptHandle)
	if err != nil {
		return err
	}
	nak := []byte("-NAK")
	if d > 0 {
		nak = nakDelay(d)
	}
	if _, err := s.cfg.Conn.RequestWithContext(ctx, ack, nak); err != nil {
		return fmt.Errorf("queue %s: change visibility: %w", name, err)
	}
	st.mu.Lock()
	if f, ok := st.flight[seq]; ok {
		f.visibleAt = s.now().Add(d)
		st.flight[seq] = f
	}
	st.mu.Unlock()
	return nil
}

// Stats counts a queue's messages. Visible and InFlight are approximate:
// a message whose visibility ended counts as visible, and after a restart
// the messages in flight count as visible until they are received again.
func (s *Service) Stats(ctx context.Context, name string) (Stats, error) {
	st, err := s.state(ctx, name)
	if err != nil {
		return Stats{}, err
	}
	stream, err := s.cfg.JetStream.Stream(ctx, streamName(st.rec.ID))
	if err != nil {
		return Stats{}, fmt.Errorf("queue %s: %w", name, err)
	}
	si, err := stream.Info(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("queue %s: %w", name, err)
	}
	ci, err := st.cons.Info(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("queue %s: %w", name, err)
	}
	now := s.now()
	retention := time.Duration(st.settings().MessageRetentionPeriod) * time.Second
	inFlight := 0
	st.mu.Lock()
	for seq, f := range st.flight {
		switch {
		case f.visibleAt.After(now):
			inFlight++
		case now.Sub(f.first) > retention:
			delete(st.flight, seq)
		}
	}
	st.mu.Unlock()
	pending, unacked := int(ci.NumPending), ci.NumAckPending
	inFlight = min(inFlight, unacked)
	out := Stats{Visible: pending + unacked - inFlight, InFlight: inFlight, Delayed: max(0, int(si.State.Msgs)-pending-unacked)}
	if si.State.Msgs > 0 {
		first, err := stream.GetMsg(ctx, si.State.FirstSeq, jetstream.WithGetMsgSubject(readySubject(st.rec.ID)))
		if err == nil {
			if ms, err := strconv.ParseInt(first.Header.Get(hdrSent), 10, 64); err == nil {
				out.OldestAge = max(0, now.Sub(time.UnixMilli(ms)))
			}
		} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return Stats{}, fmt.Errorf("queue %s: %w", name, err)
		}
	}
	return out, nil
}

// nakDelay makes a message visible again after d.
func nakDelay(d time.Duration) []byte { return fmt.Appendf(nil, `-NAK {"delay": %d}`, d.Nanoseconds()) }

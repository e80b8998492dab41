package queue

import (
	"encoding/json"
	"maps"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Attributes are a queue's settings, SQS's queue attributes.
type Attributes struct {
	// VisibilityTimeout is how long a received message stays hidden, in
	// seconds (0–43200, default 30).
	VisibilityTimeout int `json:"visibilityTimeout"`
	// MessageRetentionPeriod is how long a message is kept, in seconds
	// (60–1209600, default 345600: 4 days).
	MessageRetentionPeriod int `json:"messageRetentionPeriod"`
	// DelaySeconds delays each new message (0–900).
	DelaySeconds int `json:"delaySeconds"`
	// ReceiveMessageWaitTimeSeconds is a receive's long poll when it
	// names none (0–20).
	ReceiveMessageWaitTimeSeconds int `json:"receiveMessageWaitTimeSeconds"`
	// MaximumMessageSize bounds a message, body and attributes (1024–262144).
	MaximumMessageSize int `json:"maximumMessageSize"`
	// RedrivePolicy moves a message to a dead-letter queue once it was
	// received more than MaxReceiveCount times; nil is none.
	RedrivePolicy *RedrivePolicy `json:"redrivePolicy,omitempty"`
	// Kept are attributes Hearth stores and reports but does not act on
	// (Policy, KMS and SSE settings, RedriveAllowPolicy).
	Kept map[string]string `json:"kept,omitempty"`
}

// RedrivePolicy is SQS's RedrivePolicy.
type RedrivePolicy struct {
	DeadLetterTargetArn string `json:"deadLetterTargetArn"`
	MaxReceiveCount     int    `json:"maxReceiveCount"`
}

// Limits of SQS's.
const (
	MaxMessageBytes       = 262144
	MaxVisibility         = 12 * time.Hour
	MaxWait               = 20 * time.Second
	MaxDelay              = 15 * time.Minute
	MaxBatch              = 10
	MaxMessageAttributes  = 10
	defaultVisibility     = 30
	defaultRetention      = 345600
	maxReceiveCountLimit  = 1000
	maxQueueNameLength    = 80
	maxAttributeNameBytes = 256
)

// DefaultAttributes are a new queue's.
func DefaultAttributes() Attributes {
	return Attributes{VisibilityTimeout: defaultVisibility, MessageRetentionPeriod: defaultRetention, MaximumMessageSize: MaxMessageBytes}
}

// kept are the attributes stored as given.
var kept = map[string]bool{"Policy": true, "KmsMasterKeyId": true, "KmsDataKeyReusePeriodSeconds": true,
	"SqsManagedSseEnabled": true, "RedriveAllowPolicy": true}

// fifoOnly are FIFO queues' attributes.
var fifoOnly = map[string]bool{"FifoQueue": true, "ContentBasedDeduplication": true, "DeduplicationScope": true, "FifoThroughputLimit": true}

// intAttrs are the numeric attributes and their bounds.
var intAttrs = map[string]struct {
	min, max int
	field    func(*Attributes) *int
}{
	"VisibilityTimeout":             {0, int(MaxVisibility / time.Second), func(a *Attributes) *int { return &a.VisibilityTimeout }},
	"MessageRetentionPeriod":        {60, 1209600, func(a *Attributes) *int { return &a.MessageRetentionPeriod }},
	"DelaySeconds":                  {0, int(MaxDelay / time.Second), func(a *Attributes) *int { return &a.DelaySeconds }},
	"ReceiveMessageWaitTimeSeconds": {0, int(MaxWait / time.Second), func(a *Attributes) *int { return &a.ReceiveMessageWaitTimeSeconds }},
	"MaximumMessageSize":            {1024, MaxMessageBytes, func(a *Attributes) *int { return &a.MaximumMessageSize }},
}

// apply sets the attributes given by name, as SQS strings. A dead-letter
// target is checked by the caller (it needs the queues).
func (a *Attributes) apply(in map[string]string) error {
	for name, v := range in {
		switch {
		case fifoOnly[name]:
			if name == "FifoQueue" && v == "false" {
				continue
			}
			return errorf(ErrInvalidAttributeName, "Unknown Attribute %s: FIFO queues are not supported by Hearth", name)
		case kept[name]:
			if a.Kept == nil {
				a.Kept = map[string]string{}
			}
			if v == "" {
				delete(a.Kept, name)
			} else {
				a.Kept[name] = v
			}
		case name == "RedrivePolicy":
			if v == "" {
				a.RedrivePolicy = nil
				continue
			}
			p, err := parseRedrive(v)
			if err != nil {
				return err
			}
			a.RedrivePolicy = p
		default:
			spec, ok := intAttrs[name]
			if !ok {
				return errorf(ErrInvalidAttributeName, "Unknown Attribute %s.", name)
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < spec.min || n > spec.max {
				return errorf(ErrInvalidAttributeValue, "Invalid value for the parameter %s: %q (%d to %d)", name, v, spec.min, spec.max)
			}
			*spec.field(a) = n
		}
	}
	return nil
}

// parseRedrive reads a RedrivePolicy: maxReceiveCount may be a number or
// a string holding one, as SQS takes both.
func parseRedrive(v string) (*RedrivePolicy, error) {
	var raw struct {
		DeadLetterTargetArn string          `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(v), &raw); err != nil {
		return nil, errorf(ErrInvalidAttributeValue, "Invalid value for the parameter RedrivePolicy. Reason: Redrive policy is not a valid JSON map.")
	}
	count := strings.Trim(string(raw.MaxReceiveCount), `"`)
	n, err := strconv.Atoi(count)
	if err != nil || n < 1 || n > maxReceiveCountLimit {
		return nil, errorf(ErrInvalidAttributeValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Invalid value for maxReceiveCount: %s, valid values are from 1 to %d both inclusive.", v, count, maxReceiveCountLimit)
	}
	if raw.DeadLetterTargetArn == "" {
		return nil, errorf(ErrInvalidAttributeValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Redrive policy does not contain mandatory attribute: deadLetterTargetArn.", v)
	}
	return &RedrivePolicy{DeadLetterTargetArn: raw.DeadLetterTargetArn, MaxReceiveCount: n}, nil
}

// Strings are the attributes as SQS reports them.
func (a Attributes) Strings() map[string]string {
	out := map[string]string{}
	for name, spec := range intAttrs {
		out[name] = strconv.Itoa(*spec.field(&a))
	}
	if a.RedrivePolicy != nil {
		b, _ := json.Marshal(a.RedrivePolicy)
		out["RedrivePolicy"] = string(b)
	}
	maps.Copy(out, a.Kept)
	return out
}

var queueName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

// checkName checks a queue's name as SQS does.
func checkName(name string) error {
	if strings.HasSuffix(name, ".fifo") {
		return errorf(ErrUnsupported, "FIFO queues are not supported by Hearth: %s", name)
	}
	if !queueName.MatchString(name) {
		return errorf(ErrInvalidParameter, "Can only include alphanumeric characters, hyphens, or underscores. 1 to %d in length", maxQueueNameLength)
	}
	return nil
}

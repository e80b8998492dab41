// Package s3events is the buckets' notifications: a bucket's notification
// configuration (S3's PutBucketNotificationConfiguration, its XML kept as
// the bucket's "notification" configuration in package objects), and the
// S3 events of the objects created and removed that match it, handed to
// the durable asynchronous invocation path (a function's Event
// invocation) or to a queue before the request that made them is
// answered.
package s3events

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"net/http"
	"strings"

	"github.com/hearthdev/hearth/internal/s3api"
)

// xmlns is S3's namespace.
const xmlns = "http://s3.amazonaws.com/doc/2006-03-01/"

// Configuration is S3's NotificationConfiguration, as aws-sdk-go-v2's s3
// client writes and reads it (LambdaFunctionConfigurations are
// CloudFunctionConfiguration elements, each list flattened).
type Configuration struct {
	XMLName   xml.Name       `xml:"NotificationConfiguration"`
	Xmlns     string         `xml:"xmlns,attr,omitempty"`
	Functions []FunctionConf `xml:"CloudFunctionConfiguration"`
	Queues    []QueueConf    `xml:"QueueConfiguration"`
	Topics    []TopicConf    `xml:"TopicConfiguration"`
	// EventBridge is refused: Hearth has no EventBridge.
	EventBridge *struct{} `xml:"EventBridgeConfiguration"`
}

// Common is what every target's configuration has.
type Common struct {
	ID     string   `xml:"Id,omitempty"`
	Events []string `xml:"Event"`
	Filter *Filter  `xml:"Filter,omitempty"`
}

// FunctionConf is a LambdaFunctionConfiguration.
type FunctionConf struct {
	Common
	FunctionARN string `xml:"CloudFunction"`
}

// QueueConf is a QueueConfiguration.
type QueueConf struct {
	Common
	QueueARN string `xml:"Queue"`
}

// TopicConf is a TopicConfiguration: read so that it is refused by name.
type TopicConf struct {
	Common
	TopicARN string `xml:"Topic"`
}

// Filter is a configuration's key filter.
type Filter struct {
	S3Key struct {
		Rules []FilterRule `xml:"FilterRule"`
	} `xml:"S3Key"`
}

// FilterRule is a prefix or suffix rule.
type FilterRule struct {
	Name  string `xml:"Name"`
	Value string `xml:"Value"`
}

// The events a configuration may name.
var knownEvents = map[string]bool{
	"s3:ObjectCreated:*": true, "s3:ObjectCreated:Put": true, "s3:ObjectCreated:Post": true,
	"s3:ObjectCreated:Copy": true, "s3:ObjectCreated:CompleteMultipartUpload": true,
	"s3:ObjectRemoved:*": true, "s3:ObjectRemoved:Delete": true, "s3:ObjectRemoved:DeleteMarkerCreated": true,
}

// maxConfigBytes bounds a configuration as sent.
const maxConfigBytes = 1 << 20

func invalid(name, value, format string, args ...any) *s3api.Error {
	return &s3api.Error{Status: http.StatusBadRequest, Code: "InvalidArgument", Message: fmt.Sprintf(format, args...),
		ArgumentName: name, ArgumentValue: value}
}

// rule is one configuration, whatever its target, as matching sees it.
type rule struct {
	id             string
	events         []string
	prefix, suffix string
	// function or queue is the target's ARN.
	function, queue string
}

// Parse reads a configuration and checks its shape as S3 does: known
// events, at most one prefix and one suffix rule each, unique ids (made
// for those without one), and no two configurations that could match one
// event of one key. Targets are not checked here (Notifier does).
func Parse(raw []byte) (*Configuration, error) {
	var c Configuration
	if err := xml.Unmarshal(raw, &c); err != nil {
		return nil, &s3api.Error{Status: http.StatusBadRequest, Code: "MalformedXML",
			Message: "The XML you provided was not well-formed or did not validate against our published schema"}
	}
	if c.XMLName.Space != "" && c.XMLName.Space != xmlns {
		return nil, &s3api.Error{Status: http.StatusBadRequest, Code: "MalformedXML", Message: "Unexpected namespace " + c.XMLName.Space}
	}
	if c.EventBridge != nil {
		return nil, invalid("EventBridgeConfiguration", "", "EventBridge is not supported: Hearth delivers to functions and queues")
	}
	if len(c.Topics) > 0 {
		return nil, &s3api.Error{Status: http.StatusBadRequest, Code: "InvalidArgument", Message: "Unable to validate the following destination configurations",
			ArgumentName: c.Topics[0].TopicARN, ArgumentValue: "SNS topics are not supported: use a queue or a function"}
	}
	c.Xmlns = xmlns
	ids := map[string]bool{}
	commons := make([]*Common, 0, len(c.Functions)+len(c.Queues))
	for i := range c.Functions {
		if c.Functions[i].FunctionARN == "" {
			return nil, invalid("CloudFunction", "", "A LambdaFunctionConfiguration needs its LambdaFunctionArn")
		}
		commons = append(commons, &c.Functions[i].Common)
	}
	for i := range c.Queues {
		if c.Queues[i].QueueARN == "" {
			return nil, invalid("Queue", "", "A QueueConfiguration needs its QueueArn")
		}
		commons = append(commons, &c.Queues[i].Common)
	}
	for _, cm := range commons {
		if cm.ID == "" {
			cm.ID = newID()
		}
		if ids[cm.ID] {
			return nil, invalid("Id", cm.ID, "Configuration Id must be unique")
		}
		ids[cm.ID] = true
		if len(cm.Events) == 0 {
			return nil, invalid("Event", "", "A configuration needs at least one event")
		}
		for _, e := range cm.Events {
			if !knownEvents[e] {
				return nil, invalid("Event", e, "The event is not supported for notifications")
			}
		}
		if _, _, err := cm.affixes(); err != nil {
			return nil, err
		}
	}
	rules := c.rules()
	for i := range rules {
		for j := i + 1; j < len(rules); j++ {
			if overlap(rules[i], rules[j]) {
				return nil, invalid("Event", "", "Configurations overlap. Configurations on the same bucket cannot share a common event type.")
			}
		}
	}
	return &c, nil
}

// affixes are a configuration's prefix and suffix (empty for none);
// rule names are case-insensitive, as S3's.
func (cm *Common) affixes() (prefix, suffix string, err error) {
	if cm.Filter == nil {
		return "", "", nil
	}
	var seen [2]bool
	for _, r := range cm.Filter.S3Key.Rules {
		switch strings.ToLower(r.Name) {
		case "prefix":
			if seen[0] {
				return "", "", invalid("FilterRule", r.Name, "Cannot specify more than one prefix rule in a filter.")
			}
			seen[0], prefix = true, r.Value
		case "suffix":
			if seen[1] {
				return "", "", invalid("FilterRule", r.Name, "Cannot specify more than one suffix rule in a filter.")
			}
			seen[1], suffix = true, r.Value
		default:
			return "", "", invalid("FilterRule", r.Name, "filter rule name must be either prefix or suffix")
		}
	}
	return prefix, suffix, nil
}

func (c *Configuration) rules() []rule {
	var out []rule
	for _, f := range c.Functions {
		p, s, _ := f.affixes()
		out = append(out, rule{id: f.ID, events: f.Events, prefix: p, suffix: s, function: f.FunctionARN})
	}
	for _, q := range c.Queues {
		p, s, _ := q.affixes()
		out = append(out, rule{id: q.ID, events: q.Events, prefix: p, suffix: s, queue: q.QueueARN})
	}
	return out
}

// overlap says whether two rules could match one event of one key: a
// common event type (a wildcard covers its kind), prefixes of which one
// starts the other, suffixes of which one ends the other (an empty one
// matches all).
func overlap(a, b rule) bool {
	common := false
	for _, x := range a.events {
		for _, y := range b.events {
			if eventsOverlap(x, y) {
				common = true
			}
		}
	}
	return common &&
		(strings.HasPrefix(a.prefix, b.prefix) || strings.HasPrefix(b.prefix, a.prefix)) &&
		(strings.HasSuffix(a.suffix, b.suffix) || strings.HasSuffix(b.suffix, a.suffix))
}

func eventsOverlap(x, y string) bool {
	if x == y {
		return true
	}
	kx, nx, _ := strings.Cut(strings.TrimPrefix(x, "s3:"), ":")
	ky, ny, _ := strings.Cut(strings.TrimPrefix(y, "s3:"), ":")
	return kx == ky && (nx == "*" || ny == "*")
}

// matches says whether r takes the event name ("ObjectCreated:Put") of
// key.
func (r rule) matches(name, key string) bool {
	if !strings.HasPrefix(key, r.prefix) || !strings.HasSuffix(key, r.suffix) {
		return false
	}
	kind, _, _ := strings.Cut(name, ":")
	for _, e := range r.events {
		if e == "s3:"+name || e == "s3:"+kind+":*" {
			return true
		}
	}
	return false
}

// newID is an id for a configuration sent without one, as S3 makes.
func newID() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return base64.RawStdEncoding.EncodeToString(b[:])
}

// Marshal is the configuration's XML, as GetBucketNotificationConfiguration
// answers it.
func (c *Configuration) Marshal() ([]byte, error) {
	// As read, the name carries the namespace: written again it would
	// declare it twice.
	c.XMLName, c.Xmlns = xml.Name{Local: "NotificationConfiguration"}, xmlns
	b, err := xml.Marshal(c)
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), b...), nil
}

package s3events

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/hearthdev/hearth/internal/objects"
	"github.com/hearthdev/hearth/internal/s3api"
)

const fnARN = "arn:aws:lambda:local:000000000000:function:thumbs"

func conf(inner string) []byte {
	return []byte(`<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` + inner + `</NotificationConfiguration>`)
}

func fnConf(id, event, prefix, suffix string) string {
	var rules string
	if prefix != "" {
		rules += `<FilterRule><Name>prefix</Name><Value>` + prefix + `</Value></FilterRule>`
	}
	if suffix != "" {
		rules += `<FilterRule><Name>Suffix</Name><Value>` + suffix + `</Value></FilterRule>`
	}
	return `<CloudFunctionConfiguration><Id>` + id + `</Id><CloudFunction>` + fnARN + `</CloudFunction><Event>` + event +
		`</Event><Filter><S3Key>` + rules + `</S3Key></Filter></CloudFunctionConfiguration>`
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, xml string
		code      string // "" for accepted
		message   string
	}{
		{"empty", ``, "", ""},
		{"one", fnConf("a", "s3:ObjectCreated:*", "in/", ".jpg"), "", ""},
		{"disjoint prefixes", fnConf("a", "s3:ObjectCreated:*", "in/", "") + fnConf("b", "s3:ObjectCreated:Put", "out/", ""), "", ""},
		{"disjoint suffixes", fnConf("a", "s3:ObjectCreated:*", "", ".jpg") + fnConf("b", "s3:ObjectCreated:*", "", ".png"), "", ""},
		{"other event kinds", fnConf("a", "s3:ObjectCreated:*", "", "") + fnConf("b", "s3:ObjectRemoved:*", "", ""), "", ""},
		{"different created events", fnConf("a", "s3:ObjectCreated:Put", "", "") + fnConf("b", "s3:ObjectCreated:Copy", "", ""), "", ""},
		{"overlap: wildcard", fnConf("a", "s3:ObjectCreated:*", "in/", "") + fnConf("b", "s3:ObjectCreated:Put", "in/x/", ""), "InvalidArgument", "Configurations overlap"},
		{"overlap: no filter", fnConf("a", "s3:ObjectRemoved:Delete", "", "") + fnConf("b", "s3:ObjectRemoved:*", "", ".jpg"), "InvalidArgument", "Configurations overlap"},
		{"overlap: prefix and suffix", fnConf("a", "s3:ObjectCreated:*", "in/", "") + fnConf("b", "s3:ObjectCreated:*", "", ".jpg"), "InvalidArgument", "Configurations overlap"},
		{"unknown event", fnConf("a", "s3:ObjectRestore:*", "", ""), "InvalidArgument", "not supported"},
		{"bad rule", strings.Replace(fnConf("a", "s3:ObjectCreated:*", "in/", ""), "<Name>prefix", "<Name>infix", 1), "InvalidArgument", "prefix or suffix"},
		{"two prefixes", strings.Replace(fnConf("a", "s3:ObjectCreated:*", "in/", ".x"), "<Name>Suffix", "<Name>prefix", 1), "InvalidArgument", "more than one prefix"},
		{"same id", fnConf("a", "s3:ObjectCreated:*", "", "") + fnConf("a", "s3:ObjectRemoved:*", "", ""), "InvalidArgument", "unique"},
		{"no event", `<CloudFunctionConfiguration><CloudFunction>` + fnARN + `</CloudFunction></CloudFunctionConfiguration>`, "InvalidArgument", "at least one event"},
		{"topic", `<TopicConfiguration><Topic>arn:aws:sns:local:000000000000:t</Topic><Event>s3:ObjectCreated:*</Event></TopicConfiguration>`, "InvalidArgument", "Unable to validate"},
		{"not xml", `<CloudFunctionConfiguration>`, "MalformedXML", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(conf(tc.xml))
			if tc.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				out, err := c.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				// What is kept reads back the same.
				again, err := Parse(out)
				if err != nil || len(again.rules()) != len(c.rules()) {
					t.Fatalf("%s read back: %v", out, err)
				}
				if strings.Count(string(out), "xmlns=") != 1 {
					t.Errorf("namespace declared other than once: %s", out)
				}
				return
			}
			var e *s3api.Error
			if !errors.As(err, &e) || e.Code != tc.code || !strings.Contains(e.Message, tc.message) {
				t.Fatalf("got %v, want %s %q", err, tc.code, tc.message)
			}
		})
	}
}

func TestParseMakesIDs(t *testing.T) {
	c, err := Parse(conf(`<QueueConfiguration><Queue>arn:aws:sqs:local:000000000000:q</Queue><Event>s3:ObjectCreated:*</Event></QueueConfiguration>`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Queues[0].ID == "" || c.rules()[0].queue != "arn:aws:sqs:local:000000000000:q" {
		t.Fatalf("%+v", c.Queues)
	}
}

func TestMatches(t *testing.T) {
	r := rule{events: []string{"s3:ObjectCreated:*", "s3:ObjectRemoved:Delete"}, prefix: "in/", suffix: ".jpg"}
	for _, tc := range []struct {
		event, key string
		want       bool
	}{
		{"ObjectCreated:Put", "in/cat.jpg", true},
		{"ObjectCreated:CompleteMultipartUpload", "in/a/b.jpg", true},
		{"ObjectCreated:Copy", "in/cat.jpg", true},
		{"ObjectRemoved:Delete", "in/cat.jpg", true},
		{"ObjectRemoved:DeleteMarkerCreated", "in/cat.jpg", false},
		{"ObjectCreated:Put", "out/cat.jpg", false},
		{"ObjectCreated:Put", "in/cat.png", false},
		{"ObjectCreated:Put", "in/.jpg", true},
	} {
		if got := r.matches(tc.event, tc.key); got != tc.want {
			t.Errorf("%s %s: %v, want %v", tc.event, tc.key, got, tc.want)
		}
	}
}

// The event is what aws-lambda-go's events.S3Event reads, with S3's key
// encoding.
func TestRecordIsAnS3Event(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6e6, time.UTC)
	c := objects.Change{Bucket: "photos", Key: "in/my cat+1.jpg", Created: true, Kind: objects.KindPut, Size: 5,
		MD5: []byte{0xab, 0xcd}, Sequencer: "0000000000000001"}
	b, err := json.Marshal(Event{Records: []Record{record(c, "thumbs", "local", at)}})
	if err != nil {
		t.Fatal(err)
	}
	var e events.S3Event
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	r := e.Records[0]
	if r.EventVersion != "2.1" || r.EventSource != "aws:s3" || r.AWSRegion != "local" || !r.EventTime.Equal(at) || r.EventName != "ObjectCreated:Put" {
		t.Errorf("record: %+v", r)
	}
	o := r.S3.Object
	if o.Key != "in/my+cat%2B1.jpg" || o.URLDecodedKey != c.Key || o.Size != 5 || o.ETag != "abcd" || o.Sequencer != "0000000000000001" {
		t.Errorf("object: %+v", o)
	}
	if r.S3.SchemaVersion != "1.0" || r.S3.ConfigurationID != "thumbs" || r.S3.Bucket.Name != "photos" || r.S3.Bucket.Arn != "arn:aws:s3:::photos" {
		t.Errorf("s3: %+v", r.S3)
	}
	del := objects.Change{Bucket: "photos", Key: "in/x", Kind: objects.KindDelete, Sequencer: "2"}
	b, _ = json.Marshal(record(del, "thumbs", "local", at))
	if strings.Contains(string(b), `"size"`) || strings.Contains(string(b), `"eTag"`) || !strings.Contains(string(b), `"eventName":"ObjectRemoved:Delete"`) {
		t.Errorf("a removal: %s", b)
	}
}

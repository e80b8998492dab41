package s3events

import (
	"encoding/hex"
	"net/url"
	"strings"
	"time"

	"github.com/hearthdev/hearth/internal/objects"
)

// Event is S3's event message, as a function gets it (aws-lambda-go's
// events.S3Event reads it) and as a queue's message body holds it. The
// shape is S3's own rather than events.S3Event's, which would add fields
// S3 does not send (urlDecodedKey).
type Event struct {
	Records []Record `json:"Records"`
}

// Record is one change.
type Record struct {
	EventVersion      string            `json:"eventVersion"`
	EventSource       string            `json:"eventSource"`
	AWSRegion         string            `json:"awsRegion"`
	EventTime         string            `json:"eventTime"`
	EventName         string            `json:"eventName"`
	UserIdentity      Identity          `json:"userIdentity"`
	RequestParameters map[string]string `json:"requestParameters"`
	ResponseElements  map[string]string `json:"responseElements"`
	S3                Entity            `json:"s3"`
}

// Identity is a principal.
type Identity struct {
	PrincipalID string `json:"principalId"`
}

// Entity is the bucket and the object.
type Entity struct {
	SchemaVersion   string `json:"s3SchemaVersion"`
	ConfigurationID string `json:"configurationId"`
	Bucket          Bucket `json:"bucket"`
	Object          Object `json:"object"`
}

// Bucket is the event's bucket.
type Bucket struct {
	Name          string   `json:"name"`
	OwnerIdentity Identity `json:"ownerIdentity"`
	ARN           string   `json:"arn"`
}

// Object is the event's object; a removal has no size nor eTag.
type Object struct {
	Key       string `json:"key"`
	Size      *int64 `json:"size,omitempty"`
	ETag      string `json:"eTag,omitempty"`
	Sequencer string `json:"sequencer"`
}

// owner is the principal of Hearth's one account.
const owner = "000000000000"

// eventName is S3's name of a change: ObjectCreated:Put, ObjectRemoved:Delete.
func eventName(c objects.Change) string {
	if c.Created {
		return "ObjectCreated:" + c.Kind
	}
	return "ObjectRemoved:" + c.Kind
}

// record is the record of c for the configuration id.
func record(c objects.Change, id, region string, at time.Time) Record {
	o := Object{Key: EncodeKey(c.Key), Sequencer: c.Sequencer}
	if c.Created {
		size := c.Size
		o.Size, o.ETag = &size, hex.EncodeToString(c.MD5)
	}
	return Record{EventVersion: "2.1", EventSource: "aws:s3", AWSRegion: region,
		EventTime: at.UTC().Format("2006-01-02T15:04:05.000Z"), EventName: eventName(c),
		UserIdentity: Identity{PrincipalID: owner},
		// The caller's address is the request's, which the store
		// does not see.
		RequestParameters: map[string]string{},
		ResponseElements:  map[string]string{"x-amz-request-id": c.Sequencer, "x-amz-id-2": c.Sequencer},
		S3: Entity{SchemaVersion: "1.0", ConfigurationID: id,
			Bucket: Bucket{Name: c.Bucket, OwnerIdentity: Identity{PrincipalID: owner}, ARN: "arn:aws:s3:::" + c.Bucket},
			Object: o}}
}

// EncodeKey writes a key as S3's events do: form-encoded (a space is
// "+"), with "/" kept; url.QueryUnescape (which aws-lambda-go's
// URLDecodedKey uses) reads it back.
func EncodeKey(key string) string {
	return strings.ReplaceAll(url.QueryEscape(key), "%2F", "/")
}

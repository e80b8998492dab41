package esm

import (
	"errors"
	"strings"
	"testing"
)

func TestFilterMatch(t *testing.T) {
	msg := func(body string, attrs map[string]MessageAttribute) map[string]any {
		return filterView(record(Message{MessageID: "m1", ReceiptHandle: "r1", Body: body,
			Attributes: map[string]string{"ApproximateReceiveCount": "1", "SenderId": "hearth"}, MessageAttributes: attrs},
			"arn:aws:sqs:local:000000000000:q", "local"))
	}
	order := msg(`{"kind":"order","total":42.5,"tags":["a","b"],"customer":{"tier":"gold","id":"C-17"},"note":null}`, nil)
	plain := msg("hello world", nil)
	withAttrs := msg(`{"kind":"x"}`, map[string]MessageAttribute{"color": {DataType: "String", StringValue: "blue"}})
	tests := []struct {
		name    string
		pattern string
		record  map[string]any
		want    bool
	}{
		{"exact string", `{"body":{"kind":["order"]}}`, order, true},
		{"exact string, other value", `{"body":{"kind":["refund"]}}`, order, false},
		{"one of several values", `{"body":{"kind":["refund","order"]}}`, order, true},
		{"exact number", `{"body":{"total":[42.5]}}`, order, true},
		{"a number is not its string", `{"body":{"total":["42.5"]}}`, order, false},
		{"null", `{"body":{"note":[null]}}`, order, true},
		{"nested", `{"body":{"customer":{"tier":["gold"]}}}`, order, true},
		{"nested, other value", `{"body":{"customer":{"tier":["silver"]}}}`, order, false},
		{"every key must match", `{"body":{"kind":["order"],"customer":{"tier":["silver"]}}}`, order, false},
		{"a list value matches by an element", `{"body":{"tags":["b"]}}`, order, true},
		{"prefix", `{"body":{"customer":{"id":[{"prefix":"C-"}]}}}`, order, true},
		{"prefix, no", `{"body":{"customer":{"id":[{"prefix":"D-"}]}}}`, order, false},
		{"suffix", `{"body":{"customer":{"id":[{"suffix":"17"}]}}}`, order, true},
		{"equals-ignore-case", `{"body":{"kind":[{"equals-ignore-case":"ORDER"}]}}`, order, true},
		{"numeric range in", `{"body":{"total":[{"numeric":[">",10,"<=",42.5]}]}}`, order, true},
		{"numeric range out", `{"body":{"total":[{"numeric":[">",10,"<",42.5]}]}}`, order, false},
		{"numeric equal", `{"body":{"total":[{"numeric":["=",42.5]}]}}`, order, true},
		{"numeric on a string", `{"body":{"kind":[{"numeric":[">",0]}]}}`, order, false},
		{"exists true", `{"body":{"kind":[{"exists":true}]}}`, order, true},
		{"exists true, absent", `{"body":{"missing":[{"exists":true}]}}`, order, false},
		{"exists false, absent", `{"body":{"missing":[{"exists":false}]}}`, order, true},
		{"exists false, present", `{"body":{"kind":[{"exists":false}]}}`, order, false},
		{"exists false under an absent object", `{"body":{"nothing":{"deeper":[{"exists":false}]}}}`, order, true},
		{"anything-but a value", `{"body":{"kind":[{"anything-but":"refund"}]}}`, order, true},
		{"anything-but that value", `{"body":{"kind":[{"anything-but":["refund","order"]}]}}`, order, false},
		{"anything-but a number", `{"body":{"total":[{"anything-but":[1,2]}]}}`, order, true},
		{"anything-but an absent field", `{"body":{"missing":[{"anything-but":"x"}]}}`, order, false},
		{"anything-but a prefix", `{"body":{"customer":{"id":[{"anything-but":{"prefix":"C-"}}]}}}`, order, false},
		{"a plain body as a string", `{"body":["hello world"]}`, plain, true},
		{"a plain body by prefix", `{"body":[{"prefix":"hello"}]}`, plain, true},
		{"a plain body is not an object", `{"body":{"kind":["order"]}}`, plain, false},
		{"system attributes", `{"attributes":{"SenderId":["hearth"]}}`, order, true},
		{"message attributes", `{"messageAttributes":{"color":{"stringValue":["blue"]}}}`, withAttrs, true},
		{"message attributes, other", `{"messageAttributes":{"color":{"stringValue":["red"]}}}`, withAttrs, false},
		{"metadata", `{"eventSource":["aws:sqs"],"awsRegion":["local"]}`, order, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := CompileFilter([]string{tt.pattern})
			if err != nil {
				t.Fatalf("compile %s: %v", tt.pattern, err)
			}
			if got := f.Match(tt.record); got != tt.want {
				t.Errorf("%s on %v = %v, want %v", tt.pattern, tt.record["body"], got, tt.want)
			}
		})
	}
}

// Filters are ORed; no filter passes everything.
func TestFilterAnyOf(t *testing.T) {
	rec := filterView(record(Message{MessageID: "m", Body: `{"n":3}`}, "arn", "local"))
	f, err := CompileFilter([]string{`{"body":{"n":[1]}}`, `{"body":{"n":[3]}}`})
	if err != nil || !f.Match(rec) {
		t.Errorf("the second filter should pass n=3: %v", err)
	}
	f, err = CompileFilter([]string{`{"body":{"n":[1]}}`, `{"body":{"n":[2]}}`})
	if err != nil || f.Match(rec) {
		t.Errorf("neither filter should pass n=3: %v", err)
	}
	var none *Filter
	if f, err := CompileFilter(nil); err != nil || !f.Match(rec) || !none.Match(rec) {
		t.Errorf("no filter passes all: %v", err)
	}
}

func TestFilterRefused(t *testing.T) {
	tests := []struct {
		pattern string
		want    string // in the error
	}{
		{`not json`, "not JSON"},
		{`["a"]`, "JSON object"},
		{`{}`, "at least one key"},
		{`{"body":"x"}`, "in a list"},
		{`{"body":{"kind":[]}}`, "empty list"},
		{`{"body":{"ip":[{"cidr":"10.0.0.0/8"}]}}`, `"cidr" is not supported by Hearth`},
		{`{"body":{"k":[{"wildcard":"a*"}]}}`, `"wildcard" is not supported by Hearth`},
		{`{"$or":[{"body":{"a":["x"]}}]}`, "$or is not supported by Hearth"},
		{`{"body":{"n":[{"numeric":["<",1,">",5]}]}}`, "a range"},
		{`{"body":{"n":[{"numeric":["~",1]}]}}`, "not one of"},
		{`{"body":{"n":[{"numeric":[">"]}]}}`, "numeric takes"},
		{`{"body":{"n":[{"exists":"yes"}]}}`, "true or false"},
		{`{"body":{"n":[{"prefix":1}]}}`, "takes a string"},
		{`{"body":{"n":[{"anything-but":{"suffix":"x"}}]}}`, "not supported by Hearth"},
		{`{"body":{"n":[{"prefix":"a","suffix":"b"}]}}`, "one key"},
		{`{"body":{"n":[["nested"]]}}`, "cannot be matched"},
		{`{"body":{"n":["a"]}} {"x":1}`, "not one JSON object"},
	}
	for _, tt := range tests {
		_, err := CompileFilter([]string{tt.pattern})
		if !errors.Is(err, ErrPattern) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CompileFilter(%s) = %v, want an ErrPattern saying %q", tt.pattern, err, tt.want)
		}
	}
	six := []string{`{"a":["1"]}`, `{"a":["1"]}`, `{"a":["1"]}`, `{"a":["1"]}`, `{"a":["1"]}`, `{"a":["1"]}`}
	if _, err := CompileFilter(six); !errors.Is(err, ErrPattern) {
		t.Errorf("six filters: %v, want refused", err)
	}
	if _, err := CompileFilter([]string{`{"a":["` + strings.Repeat("x", MaxPatternLength) + `"]}`}); !errors.Is(err, ErrPattern) {
		t.Errorf("a long pattern: %v, want refused", err)
	}
}
